# One image for every Blacklist Sync service; docker-compose.yml picks the service with `blacklist-sync run NAME`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BLACKLIST_SYNC_HOME=/var/lib/blacklist-sync

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY services ./services
RUN pip install .

# Keys, keyring, Kafka credentials and env file live in this directory (a volume shared with the `init` service).
# /etc/kafka/blacklist-sync is where the `kafka-credentials` one-shot writes the broker's secret files: a named
# volume mounted there starts out owned by this user, so the one-shot (not root) can write into it.
RUN useradd --system --uid 10001 --home-dir /var/lib/blacklist-sync blacklist-sync \
    && mkdir -p /var/lib/blacklist-sync /etc/kafka/blacklist-sync \
    && chown blacklist-sync: /var/lib/blacklist-sync /etc/kafka/blacklist-sync
USER blacklist-sync
VOLUME ["/var/lib/blacklist-sync"]

EXPOSE 8001 8002 8003 8101 8102 8103 8104
CMD ["blacklist-sync", "--help"]
