"""The published contract under schemas/ is what `python -m schemas.generate` writes, valid, and true to the code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.specification import KafkaSubscriberSpecification
from faststream.kafka.subscriber.usecase import LogicSubscriber
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema

from schemas import asyncapi, generate
from schemas.catalogue import CONSUMERS, FAMILIES, all_topics, dlq_topic
from schemas.events import ListingEvent, to_wire
from services.consumers.app import build_broker
from services.consumers.registry import POLICIES
from services.kit.settings import Settings
from services.kit.signing import Keyring
from services.topology import SERVICES
from tests.unit.conftest import CONTRACT_EVENT

ROOT = Path(__file__).parents[2]
SPECS = ROOT / "tests" / "contract" / "specs"
RENDERED = generate.render()
ASYNCAPI: dict[str, Any] = json.loads(RENDERED[generate.ASYNCAPI_FILE])
OPENAPI: dict[str, dict[str, Any]] = {name: json.loads(RENDERED[f"openapi/{name}.openapi.json"]) for name in SERVICES}
VECTORS: dict[str, Any] = json.loads(RENDERED["vectors/signing-v1.json"])
CLI_TIMEOUT = 120


# --- the generated tree ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_committed_file_equals_freshly_generated_output(name: str) -> None:
    path = generate.OUT_DIR / name

    assert path.is_file(), f"schemas/{name} is missing: run `python -m schemas.generate`"
    assert path.read_text(encoding="utf-8") == RENDERED[name], f"schemas/{name} is stale: run `python -m schemas.generate`"


def test_generated_directories_hold_no_file_the_generator_does_not_write() -> None:
    extra = [name for name in generate.generated_files(generate.OUT_DIR) if name not in RENDERED]

    assert not extra, f"files the generator does not write: {extra}; delete them or run `python -m schemas.generate`"


def test_generated_json_is_sorted_indented_and_ends_with_a_newline() -> None:
    for name, text in RENDERED.items():
        if name.endswith(".json"):
            assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n", name


def test_check_mode_names_a_differing_a_missing_and_an_extra_file_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert generate.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "openapi" / "airline.openapi.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "vectors" / "signing-v1.txt").unlink()
    (tmp_path / "asyncapi" / "old.asyncapi.json").write_text("{}\n", encoding="utf-8")
    capsys.readouterr()

    assert generate.main(["--check", "--out", str(tmp_path)]) == 1

    err = capsys.readouterr().err
    assert "openapi/airline.openapi.json" in err
    assert "vectors/signing-v1.txt" in err
    assert "asyncapi/old.asyncapi.json" in err
    assert "openapi/court.openapi.json" not in err
    assert "python -m schemas.generate" in err


def test_writing_removes_generated_files_it_no_longer_writes_and_keeps_code(tmp_path: Path) -> None:
    (tmp_path / "openapi").mkdir()
    (tmp_path / "openapi" / "retired.openapi.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "vectors").mkdir()
    (tmp_path / "vectors" / "signing.py").write_text("# code beside the vectors\n", encoding="utf-8")

    generate.main(["--out", str(tmp_path)])

    assert not (tmp_path / "openapi" / "retired.openapi.json").exists()
    assert (tmp_path / "vectors" / "signing.py").exists()
    assert generate.stale(tmp_path, RENDERED) == []


def test_check_passes_in_a_fresh_process_without_a_stack_a_keyring_or_the_same_hash_seed(tmp_path: Path) -> None:
    # Another hash seed reorders every set; an empty home has no keyring, keys or env file; Kafka's port is closed.
    env = {
        **os.environ,
        "PYTHONHASHSEED": "12345",
        "BLACKLIST_SYNC_HOME": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }
    env.pop("AUTHORITY_KEYRING", None)

    done = subprocess.run(
        [sys.executable, "-m", "schemas.generate", "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )

    assert done.returncode == 0, done.stderr[-2000:]


# --- AsyncAPI ------------------------------------------------------------------------------------------------------


def test_asyncapi_document_is_valid_asyncapi_3_0_0() -> None:
    validator = jsonschema_rs.validator_for(json.loads((SPECS / "asyncapi-3.0.0.schema.json").read_text()))

    errors = [f"{list(e.instance_path)}: {e.message[:200]}" for e in validator.iter_errors(ASYNCAPI)]

    assert ASYNCAPI["asyncapi"] == "3.0.0"
    assert not errors, errors[:5]
    ApplicationSchema.model_validate(ASYNCAPI)  # what `faststream docs serve <file>` reads


def test_faststream_docs_gen_writes_the_committed_asyncapi_document(tmp_path: Path) -> None:
    faststream = Path(sys.executable).with_name("faststream")

    done = subprocess.run(
        [str(faststream), "docs", "gen", "schemas.asyncapi:app", "--out", "asyncapi.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )

    assert done.returncode == 0, f"{done.stderr[-2000:]}\n(the CLI needs `faststream[cli]` in the dev dependencies)"
    assert json.loads((tmp_path / "asyncapi.json").read_text(encoding="utf-8")) == ASYNCAPI


def test_asyncapi_has_one_channel_per_contract_topic_with_its_partitions_and_cleanup_policy() -> None:
    channels = {
        name: (c["address"], c["bindings"]["kafka"]["partitions"], c["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"])
        for name, c in ASYNCAPI["channels"].items()
    }

    assert channels == {t.name: (t.name, t.partitions, [t.config["cleanup.policy"]]) for t in all_topics()}


def operations(action: str) -> set[tuple[str, str | None]]:
    """(topic, consumer group or None) of every operation with this action."""
    found = set()
    for op in ASYNCAPI["operations"].values():
        if op["action"] == action:
            group = op.get("bindings", {}).get("kafka", {}).get("groupId", {}).get("enum", [None])[0]
            found.add((op["channel"]["$ref"].rsplit("/", 1)[-1], group))
    return found


def test_asyncapi_send_operations_are_the_publishers_topics_and_the_dead_letter_topics() -> None:
    expected = {(f.topic, None) for f in FAMILIES.values()} | {(dlq_topic(c), None) for c in CONSUMERS}

    assert operations("send") == expected


def test_asyncapi_receive_operations_are_the_running_consumers_subscriptions(tmp_path: Path) -> None:
    settings = Settings(tmp_path, "127.0.0.1:1", "postgresql://unused", {}, b"unused", tmp_path / "keyring.json")
    running = set()
    for policy in POLICIES.values():
        for subscriber in build_broker(policy, settings, lambda: None).subscribers:
            assert isinstance(subscriber, LogicSubscriber) and isinstance(subscriber.specification, KafkaSubscriberSpecification)
            running |= {(topic, subscriber.group_id) for topic in subscriber.specification.topics}

    assert operations("receive") == running
    assert {group for _, group in running} == set(CONSUMERS)


def message_validator(part: str, message: str) -> jsonschema_rs.Validator:
    """A validator for one part (payload or headers) of a message of the AsyncAPI document, its references resolved."""
    schema = ASYNCAPI["components"]["messages"][message][part]
    return jsonschema_rs.Draft7Validator({**schema, "components": ASYNCAPI["components"]})


def test_asyncapi_listing_message_accepts_what_publishers_send_and_refuses_what_consumers_refuse() -> None:
    payload, headers = message_validator("payload", "ListingEvent"), message_validator("headers", "ListingEvent")
    records = [r for b in VECTORS["batches"] for r in b["records"]]
    published = json.loads(to_wire(ListingEvent.model_validate(CONTRACT_EVENT)))  # the bytes the outbox relay signs

    assert payload.is_valid(published)
    for record in records:
        assert payload.is_valid(json.loads(record["value_text"])), record["key_text"]
        assert headers.is_valid(record["headers"]), record["key_text"]
    assert not payload.is_valid({**published, "schema_version": 2})
    assert not payload.is_valid({**published, "listing": {**published["listing"], "restrictions": ["SCORE"]}})
    assert not headers.is_valid({**records[0]["headers"], "x-merkle-size": "0"})
    assert not headers.is_valid({k: v for k, v in records[0]["headers"].items() if k != "x-signature"})


@pytest.mark.parametrize("message", ["ListingEvent", "DeadLetter"])
def test_asyncapi_message_examples_match_their_message_schemas(message: str) -> None:
    payload, headers = message_validator("payload", message), message_validator("headers", message)
    examples = ASYNCAPI["components"]["messages"][message]["examples"]

    assert examples
    assert all(payload.is_valid(e["payload"]) and headers.is_valid(e["headers"]) for e in examples)


def test_asyncapi_listing_example_is_a_record_consumers_accept_under_the_vector_keyring() -> None:
    (example,) = ASYNCAPI["components"]["messages"]["ListingEvent"]["examples"]
    value = next(r["value_text"] for b in VECTORS["batches"] for r in b["records"] if r["headers"] == example["headers"])

    assert json.loads(value) == example["payload"]
    assert Keyring.from_json(VECTORS["keyring"]).verify(value.encode(), {k: v.encode() for k, v in example["headers"].items()})


def test_asyncapi_generation_fails_when_an_endpoint_declares_another_payload_than_the_contract() -> None:
    broker = KafkaBroker("localhost:9092")
    topic = dlq_topic(CONSUMERS[0])
    broker.publisher(topic, title=asyncapi.operation_id(CONSUMERS[0], "send", topic), schema=ListingEvent)

    with pytest.raises(ValueError, match="declares payload"):
        asyncapi.ContractAsyncAPI(broker, schema_version="3.0.0").to_specification()


# --- OpenAPI -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_openapi_document_is_valid_openapi_3_1(service: str) -> None:
    validator = jsonschema_rs.validator_for(json.loads((SPECS / "openapi-3.1.schema.json").read_text()))

    errors = [f"{list(e.instance_path)}: {e.message[:200]}" for e in validator.iter_errors(OPENAPI[service])]

    assert not errors, errors[:5]


COMMON_ROUTES = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}
PUBLISHER_ROUTES = {
    ("post", "/v1/listings"),
    ("get", "/v1/listings"),
    ("get", "/v1/listings/{listing_id}"),
    ("post", "/v1/listings/{listing_id}/amend"),
    ("post", "/v1/listings/{listing_id}/revoke"),
    ("get", "/v1/listings/{listing_id}/history"),
}


def routes(service: str) -> set[tuple[str, str]]:
    return {(method, path) for path, item in OPENAPI[service]["paths"].items() for method in item}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_openapi_document_has_every_route_of_the_contract(service: str) -> None:
    contract = PUBLISHER_ROUTES if SERVICES[service].kind == "publisher" else {("post", "/v1/checks")}

    assert COMMON_ROUTES | contract <= routes(service)


@pytest.mark.parametrize("service", [s for s in sorted(SERVICES) if SERVICES[s].kind == "publisher"])
def test_openapi_publisher_routes_require_a_bearer_token(service: str) -> None:
    schemes = OPENAPI[service]["components"]["securitySchemes"]
    listing_routes = {(m, p): OPENAPI[service]["paths"][p][m] for m, p in PUBLISHER_ROUTES}

    assert {"type": "http", "scheme": "bearer"} in schemes.values()
    assert all(op.get("security") == [{name: []} for name in schemes] for op in listing_routes.values())


async def refused_check() -> dict[str, Any]:
    """The body the airline service really sends for a malformed check (no lifespan: nothing connects)."""
    from services.consumers.airline.app import app

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://airline") as client:
        response = await client.post("/v1/checks", json={"subject": {"kind": "person"}, "action": "board_flight"})
    assert response.status_code == 422
    body: dict[str, Any] = response.json()
    return body


async def test_openapi_documents_the_422_body_the_services_send() -> None:
    document = OPENAPI["airline"]
    reference = document["paths"]["/v1/checks"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    documented = document["components"]["schemas"][reference.rsplit("/", 1)[-1]]

    sent = await refused_check()

    assert set(sent) <= set(documented["properties"]), (sorted(sent), sorted(documented["properties"]))


# --- the signing page --------------------------------------------------------------------------------------------------


def test_signing_page_quotes_only_values_that_are_in_the_vectors() -> None:
    page = (ROOT / "docs" / "signing-from-another-language.md").read_text(encoding="utf-8")
    vectors = RENDERED["vectors/signing-v1.json"]
    quoted = set(re.findall(r"\b[0-9a-f]{64}\b", page)) | set(re.findall(r"[A-Za-z0-9+/]{86}==", page))

    assert len(quoted) >= 5, "the page's worked example quotes hashes and a signature from the vectors"
    assert not [q for q in quoted if q not in vectors], "the page quotes values the vectors no longer hold"
    assert VECTORS["signature_context_text"] in page
