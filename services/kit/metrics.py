"""Prometheus metrics every service exposes on /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPLIED = Counter("blacklist_events_applied_total", "Records applied to a consumer's copy", ["consumer", "outcome"])
DEAD_LETTERED = Counter("blacklist_events_dead_lettered_total", "Records sent to the dead-letter topic", ["consumer", "reason"])
DELAY_SAMPLES_PER_BATCH = 8
PUBLISH_TO_APPLY = Histogram(
    "blacklist_publish_to_apply_seconds",
    "Time from an event's occurred_at to its commit in a consumer's copy (up to 8 records sampled per batch)",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CHECKS = Histogram(
    "blacklist_check_seconds",
    "Check API latency",
    ["consumer", "allowed"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
OUTBOX_SENT = Counter("blacklist_outbox_sent_total", "Outbox records sent to Kafka", ["service"])
OUTBOX_BACKLOG = Gauge("blacklist_outbox_backlog", "Outbox records not yet sent to Kafka", ["service"])
LISTINGS_PUBLISHED = Counter(
    "blacklist_listings_changed_total", "Listing changes accepted by a publisher", ["service", "event_type"]
)
CONSUMER_LAG = Gauge(
    "blacklist_consumer_lag",
    "Records in the partition not yet applied (high watermark - next offset)",
    ["consumer", "topic", "partition"],
)
LAST_APPLIED = Gauge(
    "blacklist_copy_last_applied_timestamp_seconds", "When the consumer last committed a batch to its copy", ["consumer"]
)
