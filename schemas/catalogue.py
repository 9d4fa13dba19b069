"""The contract's vocabulary as data: restriction codes, lists, who may publish them, topics."""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass
from enum import StrEnum


class Restriction(StrEnum):
    FLIGHT = "FLIGHT"
    RAIL = "RAIL"
    RAIL_PREMIUM = "RAIL_PREMIUM"
    LUXURY_GOODS = "LUXURY_GOODS"
    PRIVATE_SCHOOL_TUITION = "PRIVATE_SCHOOL_TUITION"
    STAR_HOTEL = "STAR_HOTEL"
    REAL_ESTATE = "REAL_ESTATE"
    VEHICLE = "VEHICLE"
    VACATION_TRAVEL = "VACATION_TRAVEL"
    CITY_SUBSIDY = "CITY_SUBSIDY"


NATIONAL = "national"

AUTHORITY_ID = re.compile(r"^(court|transport|city)\.[a-z0-9][a-z0-9-]{0,62}$")
LIST_ID = re.compile(r"^(court\.dishonest_debtor|transport\.flight_ban|transport\.rail_ban|city\.[a-z0-9-]+\.[a-z0-9_]+)$")
REGION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3}){1,2}$")


@dataclass(frozen=True)
class Family:
    """An authority family: the service that hosts it and the topic it writes."""

    service: str
    topic: str
    authority_prefix: str


FAMILIES: dict[str, Family] = {
    "court": Family(service="court", topic="court.listings.v1", authority_prefix="court."),
    "transport": Family(service="transport", topic="transport.listings.v1", authority_prefix="transport."),
    "city": Family(service="city-pilot", topic="city-pilot.listings.v1", authority_prefix="city."),
}

LISTING_TOPICS: tuple[str, ...] = tuple(f.topic for f in FAMILIES.values())
LISTING_TOPIC_PARTITIONS = 6
DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000
DLQ_MAX_MESSAGE_BYTES = 2 * 1024 * 1024

CONSUMERS: tuple[str, ...] = ("airline", "ticketing", "luxury-retail", "admissions")
PUBLISHERS: tuple[str, ...] = ("court", "transport", "city-pilot")


def dlq_topic(consumer: str) -> str:
    return f"{consumer}.dlq.v1"


def schema_name(service: str) -> str:
    """PostgreSQL schema of a service (CONTRACT section 10): dashes become underscores."""
    return service.replace("-", "_")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def all_topics(partitions: int = LISTING_TOPIC_PARTITIONS) -> list[TopicSpec]:
    """Every topic of the contract with its cleanup policy (CONTRACT section 3)."""
    listing = [TopicSpec(t, partitions, {"cleanup.policy": "compact", "min.insync.replicas": "1"}) for t in LISTING_TOPICS]
    dlq = [
        # A dead letter is its record plus x-dlq-* headers: room above the broker's 1 MiB default, so a record
        # Kafka accepted on a listing topic can always be dead-lettered.
        TopicSpec(
            dlq_topic(c),
            partitions,
            {"cleanup.policy": "delete", "retention.ms": str(DLQ_RETENTION_MS), "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)},
        )
        for c in CONSUMERS
    ]
    return listing + dlq


def family_of(authority: str) -> Family | None:
    kind = authority.split(".", 1)[0]
    return FAMILIES.get(kind)


# Who may publish which list (section 1). `<city>` is the publishing city's own name, `*` any name.
PUBLISHING: tuple[dict[str, str], ...] = (
    {"authority": "court.*", "list": "court.dishonest_debtor"},
    {"authority": "transport.caac", "list": "transport.flight_ban"},
    {"authority": "transport.railway", "list": "transport.rail_ban"},
    {"authority": "city.<city>", "list": "city.<city>.<name>"},
)


def _pattern(text: str, **bound: str) -> re.Pattern[str]:
    regex = re.escape(text).replace(r"\*", "[a-z0-9-]+").replace("<name>", "[a-z0-9_]+")
    city = re.escape(bound["city"]) if "city" in bound else "(?P<city>[a-z0-9-]+)"
    return re.compile("^" + regex.replace("<city>", city) + "$")


@functools.lru_cache(maxsize=4096)  # asked once per record at replay speed; the answer never changes
def may_publish(authority: str, list_id: str) -> bool:
    """Section 1: an authority may publish only its own lists, as the PUBLISHING table says."""
    if not AUTHORITY_ID.match(authority) or not LIST_ID.match(list_id):
        return False
    for rule in PUBLISHING:
        found = _pattern(rule["authority"]).match(authority)
        if found and _pattern(rule["list"], **found.groupdict()).match(list_id):
            return True
    return False


def authority_matches(pattern: str, authority: str) -> bool:
    """`court.*` covers every court; anything else must match exactly."""
    if pattern.endswith(".*"):
        return authority.startswith(pattern[:-1]) and fnmatch.fnmatchcase(authority, pattern)
    return pattern == authority


@dataclass(frozen=True)
class City:
    authority: str
    region: str
    restrictions: frozenset[Restriction]
    min_term_days: int = 30
    max_term_days: int = 730


CITIES: dict[str, City] = {
    c.authority: c
    for c in (
        City("city.hangzhou", "CN-ZJ-HZ", frozenset({Restriction.LUXURY_GOODS, Restriction.CITY_SUBSIDY})),
        City("city.chengdu", "CN-SC-CD", frozenset({Restriction.LUXURY_GOODS, Restriction.CITY_SUBSIDY})),
        City("city.rongcheng", "CN-SD-RC", frozenset({Restriction.LUXURY_GOODS, Restriction.CITY_SUBSIDY})),
    )
}
