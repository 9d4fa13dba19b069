"""The Kafka side of the contract (CONTRACT sections 3, 4 and 6) as AsyncAPI 3: `faststream docs gen schemas.asyncapi:app`."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from schemas import generate
from schemas.catalogue import CONSUMERS, FAMILIES, LISTING_TOPICS, TopicSpec, all_topics, dlq_topic
from schemas.events import DlqReason, Header, ListingEvent
from schemas.vectors import signing as signing_vectors

TITLE = "Blacklist Sync"
CONTRACT_VERSION = "1"
LOCAL_KAFKA = "localhost:9092"
KAFKA_BINDING = "0.4.0"
LISTING_MESSAGE = "ListingEvent"
DEAD_LETTER_MESSAGE = "DeadLetter"

DESCRIPTION = (
    "Listing events of the Blacklist Sync contract v1: authorities publish signed listing events to compacted "
    "topics; every consumer group applies the ones it checks and writes what it cannot apply to its dead-letter "
    "topic. Values are UTF-8 JSON (schemas/json/listing-event.v1.schema.json); every record is signed in a batch "
    "(headers x-key-id, x-merkle-*, x-signature; see docs/signing-from-another-language.md and the test vectors in "
    "schemas/vectors/). " + generate.GENERATED
)


def operation_id(service: str, action: str, topic: str) -> str:
    """`court.send.court.listings.v1`: who does what on which topic."""
    return f"{service}.{action}.{topic}"


# Receive operations by id -> the consumer group that performs them (FastStream 0.7.8 does not write group ids).
GROUPS: dict[str, str] = {operation_id(c, "receive", t): c for c in CONSUMERS for t in LISTING_TOPICS}


def _receiver() -> Callable[[ListingEvent], Coroutine[Any, Any, None]]:
    # A fresh handler per subscriber: FastStream derives the message payload from this signature.
    async def apply_listing_event(event: ListingEvent) -> None:
        """Documentation only: the running consumers are services/consumers/app.py."""

    return apply_listing_event


def build_broker() -> KafkaBroker:
    """A broker that only describes: the publishers' and consumers' endpoints, never connected."""
    broker = KafkaBroker(LOCAL_KAFKA, description="Kafka; the local one is started by `blacklist-sync up`.")
    for family in FAMILIES.values():
        broker.publisher(
            family.topic,
            title=operation_id(family.service, "send", family.topic),
            description=f"The {family.service} service publishes the listings of {family.authority_prefix}* authorities.",
            schema=ListingEvent,
        )
    for consumer in CONSUMERS:
        for topic in LISTING_TOPICS:
            broker.subscriber(
                topic,
                group_id=consumer,
                title=operation_id(consumer, "receive", topic),
                description=f"Consumer group {consumer} verifies, filters and applies listing events to its copy.",
            )(_receiver())
        broker.publisher(
            dlq_topic(consumer),
            title=operation_id(consumer, "send", dlq_topic(consumer)),
            description=f"Consumer {consumer} dead-letters each record it cannot apply, with the reason.",
            schema=bytes,
        )
    return broker


def _rewrite_refs(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {
            k: (v.replace(old, new, 1) if k == "$ref" and isinstance(v, str) else _rewrite_refs(v, old, new))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v, old, new) for v in node]
    return node


def payload_schemas() -> dict[str, Any]:
    """The ListingEvent schema and its parts, with the same constraints as schemas/json/listing-event.v1.schema.json."""
    event = generate.model_schema(ListingEvent, "Listing event v1")
    parts = event.pop("$defs")
    for key in ("$schema", "$comment"):
        event.pop(key)
    schemas = {**parts, LISTING_MESSAGE: event}
    rewritten: dict[str, Any] = _rewrite_refs(schemas, "#/$defs/", "#/components/schemas/")
    return rewritten


def _headers(definition: str, description: str) -> dict[str, Any]:
    schema: dict[str, Any] = copy.deepcopy(generate.headers_schema()["$defs"][definition])
    schema["description"] = description
    return schema


def _listing_example() -> dict[str, Any]:
    """A batch of one from the signing vectors; it verifies under their public test key vectors-court."""
    record = signing_vectors.batch(signing_vectors.BATCHES[0])["records"][0]
    summary = "A batch of one signed with the test key vectors-court (schemas/vectors/signing-v1.json)."
    return {
        "name": "signedBatchOfOne",
        "summary": summary,
        "headers": record["headers"],
        "payload": json.loads(record["value_text"]),
    }


def _dead_letter_example() -> dict[str, Any]:
    record = signing_vectors.batch(signing_vectors.BATCHES[0])["records"][0]
    headers = {
        **record["headers"],
        Header.SIGNATURE.value: "A" * 86 + "==",
        Header.DLQ_REASON.value: DlqReason.BAD_SIGNATURE.value,
        Header.DLQ_DETAIL.value: "signature by vectors-court does not verify",
        Header.DLQ_SOURCE.value: f"{LISTING_TOPICS[0]}/3/42",
    }
    summary = "ListingEvent's signedBatchOfOne example with a forged signature, as a consumer dead-letters it."
    return {"name": "forgedSignature", "summary": summary, "headers": headers, "payload": record["value_text"]}


def messages() -> dict[str, Any]:
    """The two record shapes on the wire: a signed listing event, and a dead letter."""
    listing = {
        "name": LISTING_MESSAGE,
        "title": "Listing event v1",
        "summary": "The full state of one listing after a change (event-carried state), signed in a batch.",
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{LISTING_MESSAGE}"},
        "headers": _headers("RecordHeaders", "Kafka headers; each value is the UTF-8 encoding of this string."),
        "examples": [_listing_example()],
        "bindings": {
            "kafka": {"key": {"type": "string", "description": "listing.listing_id, UTF-8."}, "bindingVersion": KAFKA_BINDING}
        },
    }
    dead_letter = {
        "name": DEAD_LETTER_MESSAGE,
        "title": "Dead letter v1",
        "summary": "A record a consumer could not apply: original key, value and headers unchanged, plus the reason.",
        "contentType": "application/octet-stream",
        "payload": {
            "type": "string",
            "format": "binary",
            "description": "The original value bytes, unchanged (often not valid).",
        },
        "headers": _headers("DeadLetterHeaders", "The original record's headers as they came, plus these three."),
        "examples": [_dead_letter_example()],
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The original record's key, unchanged."},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    return {LISTING_MESSAGE: listing, DEAD_LETTER_MESSAGE: dead_letter}


def _message_of(topic: str) -> str:
    return LISTING_MESSAGE if topic in LISTING_TOPICS else DEAD_LETTER_MESSAGE


def _channel(topic: TopicSpec, description: str) -> dict[str, Any]:
    config: dict[str, Any] = {"cleanup.policy": [topic.config["cleanup.policy"]]}
    if "retention.ms" in topic.config:
        config["retention.ms"] = int(topic.config["retention.ms"])
    message = _message_of(topic.name)
    return {
        "address": topic.name,
        "description": description,
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        "servers": [{"$ref": "#/servers/development"}],
        "bindings": {
            "kafka": {
                "topic": topic.name,
                "partitions": topic.partitions,
                "topicConfiguration": config,
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _channel_description(topic: str) -> str:
    if topic in LISTING_TOPICS:
        return "Listing events, key = listing_id; compacted, so the newest record per key is the listing's current state."
    return "Dead letters of one consumer (CONTRACT section 6); deleted after 30 days."


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _declared_payload(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    """The payload FastStream derived from the endpoint's declared type (publisher schema or handler signature)."""
    message = _resolve(document, operation["messages"][0]["$ref"])
    payload = _resolve(document, message["$ref"])["payload"]
    return dict(_resolve(document, payload["$ref"]) if "$ref" in payload else payload)


def _check_declared(op_id: str, topic: str, payload: dict[str, Any]) -> None:
    # The document's messages are written here, not by FastStream: fail if the declared endpoints disagree with them.
    expected = ListingEvent.__name__ if topic in LISTING_TOPICS else None
    found = payload.get("title") if expected else payload.get("format")
    if found != (expected or "binary"):
        raise ValueError(f"{op_id}: the endpoint declares payload {payload.get('title')!r}, the contract {_message_of(topic)}")


def _operation(op_id: str, generated: dict[str, Any]) -> dict[str, Any]:
    """FastStream's operation, pointed at the one channel of its topic, with its consumer group."""
    channel = _resolve(generated, generated["operations"][op_id]["channel"]["$ref"])
    topic = channel["address"]
    _check_declared(op_id, topic, _declared_payload(generated, generated["operations"][op_id]))
    operation: dict[str, Any] = {
        "action": generated["operations"][op_id]["action"],
        "channel": {"$ref": f"#/channels/{topic}"},
        "messages": [{"$ref": f"#/channels/{topic}/messages/{_message_of(topic)}"}],
        "description": channel["description"],
    }
    if op_id in GROUPS:
        group = {"type": "string", "enum": [GROUPS[op_id]]}
        operation["bindings"] = {"kafka": {"groupId": group, "bindingVersion": KAFKA_BINDING}}
    return operation


def canonical(generated: dict[str, Any]) -> dict[str, Any]:
    """FastStream's document with one channel per topic (it writes one per endpoint), the record headers, keys,
    topic configuration and consumer groups it does not model, and component names the AsyncAPI schema accepts."""
    document = copy.deepcopy(generated)
    document["info"]["description"] = DESCRIPTION
    document["servers"]["development"]["description"] = "The local Kafka; set KAFKA_BOOTSTRAP_SERVERS for another."
    document["channels"] = {t.name: _channel(t, _channel_description(t.name)) for t in all_topics()}
    document["operations"] = {op_id: _operation(op_id, generated) for op_id in sorted(generated["operations"])}
    document["components"] = {"messages": messages(), "schemas": payload_schemas()}
    ordered: dict[str, Any] = sort_keys(document)
    return ordered


def sort_keys(node: Any) -> Any:
    """Keys in sorted order at every level, so that any writer (json.dump without sort_keys included) is stable."""
    if isinstance(node, dict):
        return {k: sort_keys(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [sort_keys(v) for v in node]
    return node


@dataclass(frozen=True)
class ContractDocument:
    """A finished AsyncAPI document, in the shape FastStream's `docs gen` and `docs serve` expect of a specification."""

    document: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.document["info"]["title"])

    def to_jsonable(self) -> Any:
        return copy.deepcopy(self.document)

    def to_json(self) -> str:
        return json.dumps(self.document, sort_keys=True)

    def to_yaml(self) -> str:
        return json.dumps(self.document, indent=2, sort_keys=True) + "\n"  # JSON is YAML 1.2: no YAML library needed


class ContractAsyncAPI(AsyncAPI):
    """FastStream's AsyncAPI 3 factory, finished by `canonical`."""

    def to_specification(self) -> ContractDocument:
        return ContractDocument(canonical(super().to_specification().to_jsonable()))


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document, as `faststream docs gen schemas.asyncapi:app` writes it."""
    return app.schema.to_specification().to_jsonable()  # type: ignore[no-any-return]


broker = build_broker()
app = FastStream(
    broker,
    specification=ContractAsyncAPI(title=TITLE, version=CONTRACT_VERSION, description=DESCRIPTION, schema_version="3.0.0"),
)
