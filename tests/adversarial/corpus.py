"""The committed corpus of hostile records (tests/corpus/*.json): loading each case and building its Kafka records."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.events import DlqReason, Header
from tests.adversarial.records import (
    COURT,
    COURT_TOPIC,
    Keys,
    Record,
    delete_path,
    encode,
    event_document,
    event_type_of,
    signature_headers,
    with_changes,
)

CORPUS_DIR = Path(__file__).resolve().parent.parent / "corpus"
NO_OP = "no_op"
OUTCOMES = frozenset({NO_OP, *(r.value for r in DlqReason)})
GROW = "$GROW"


@dataclass(frozen=True)
class Case:
    """One corpus file: a hostile record (or a few), what must happen to it, and valid history to set up first."""

    name: str
    description: str
    expect: str
    setup: Sequence[Mapping[str, Any]]
    records: Sequence[Mapping[str, Any]]


def load_corpus(directory: Path = CORPUS_DIR) -> list[Case]:
    cases = []
    for path in sorted(directory.glob("*.json")):
        spec = json.loads(path.read_text())
        if spec["expect"] not in OUTCOMES:
            raise ValueError(f"{path.name}: expect must be one of {sorted(OUTCOMES)}")
        cases.append(Case(path.stem, spec["description"], spec["expect"], spec.get("setup", []), spec["records"]))
    return cases


@dataclass(frozen=True)
class Subjects:
    """Who the case's own listing and the shared victim listing are about."""

    run: str
    victim_id: str
    victim_subject: str
    own_subject: str


@dataclass(frozen=True)
class BuiltCase:
    case: Case
    setup: list[Record]
    attack: list[Record]
    listing_ids: frozenset[str]


def own_listing_id(run: str, case_name: str) -> str:
    return f"{COURT}:adv-{run}-{case_name}"


def build(case: Case, keys: Keys, subjects: Subjects) -> BuiltCase:
    own = own_listing_id(subjects.run, case.name)
    template = event_document(own, subjects.own_subject)
    setup = [_setup_record(case, i, with_changes(template, changes), keys, subjects.run) for i, changes in enumerate(case.setup)]
    attack = [_attack_record(case, i, spec, template, setup, keys, own, subjects) for i, spec in enumerate(case.records)]
    ids = {own}
    for record in attack:
        ids |= _mentioned_ids(record)
    return BuiltCase(case, setup, attack, frozenset(ids))


def _setup_record(case: Case, index: int, document: dict[str, Any], keys: Keys, run: str) -> Record:
    value = encode(document)
    headers = signature_headers(keys.signing_key("court-dev"), COURT, [value])[0]
    headers.append((Header.EVENT_TYPE.value, str(document["event_type"]).encode()))
    listing_id = str(document["listing"]["listing_id"])
    return Record(f"{run}/{case.name}/setup{index}", COURT_TOPIC, listing_id.encode(), value, headers)


def _attack_record(
    case: Case,
    index: int,
    spec: Mapping[str, Any],
    template: dict[str, Any],
    setup: Sequence[Record],
    keys: Keys,
    own: str,
    subjects: Subjects,
) -> Record:
    label = f"{subjects.run}/{case.name}/{index}"
    topic = str(spec.get("topic", COURT_TOPIC))
    value_spec = spec["value"]
    if "replay_setup" in value_spec:  # the very bytes and headers of an earlier record, as a replay delivers them
        earlier = setup[int(value_spec["replay_setup"])]
        return Record(label, topic, earlier.key, earlier.value, earlier.headers)
    placeholders = {"$LISTING_ID": own, "$VICTIM_ID": subjects.victim_id, "$RUN": subjects.run}
    value, about = _value(value_spec, template, subjects, placeholders)
    if value is not None and "truncate" in value_spec:
        value = value[: int(value_spec["truncate"])]
    if value is not None and "append" in value_spec:
        value += str(value_spec["append"]).encode()
    sign_spec = spec.get("sign", {})
    value, headers = _headers(sign_spec, value, keys) if sign_spec is not None else (value, [_content_type()])
    return Record(label, topic, _key(spec.get("key", "listing"), about, placeholders), value, headers)


def _substitute(value: object, placeholders: Mapping[str, str]) -> object:
    if isinstance(value, str):
        for name, text in placeholders.items():
            value = value.replace(name, text)
        return value
    if isinstance(value, list):
        return [_substitute(v, placeholders) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, placeholders) for k, v in value.items()}
    return value


def _value(
    spec: Mapping[str, Any], template: dict[str, Any], subjects: Subjects, placeholders: Mapping[str, str]
) -> tuple[bytes | None, str]:
    """The value bytes and the listing id the record is about (for its default record key)."""
    own = placeholders["$LISTING_ID"]
    if spec.get("null"):
        return None, own
    if "text" in spec:
        return str(_substitute(spec["text"], placeholders)).encode(), own
    if "base64" in spec:
        return base64.b64decode(spec["base64"]), own
    if "repeat" in spec:
        r = spec["repeat"]
        return (r.get("head", "") + r["unit"] * int(r["count"]) + r.get("tail", "")).encode(), own
    event = spec["event"]
    document = event_document(subjects.victim_id, subjects.victim_subject) if event.get("about") == "victim" else template
    changes = _substitute(event.get("set", {}), placeholders)
    assert isinstance(changes, dict), "`set` maps dotted paths to values"
    document = with_changes(document, changes)
    for path in event.get("delete", []):
        delete_path(document, path)
    about = str(document["listing"]["listing_id"]) if isinstance(document.get("listing"), dict) else own
    if "grow" in event:
        return _grown(document, event["grow"], spec.get("encoding")), about
    text = json.dumps(document, ensure_ascii=False)
    return (text.encode(spec["encoding"]) if "encoding" in spec else text.encode()), about


def _grown(document: dict[str, Any], grow: Mapping[str, Any], encoding: str | None) -> bytes:
    """Huge strings, huge arrays and deep nesting, written as text: building them as objects would hit recursion limits."""
    document = with_changes(document, {grow["path"]: GROW})
    count = int(grow["count"])
    if "string" in grow:
        filler = json.dumps(grow["string"] * count)
    elif "array" in grow:
        filler = "[" + ",".join([json.dumps(grow["array"])] * count) + "]"
    else:
        filler = "[" * count + "]" * count
    text = json.dumps(document, ensure_ascii=False).replace(json.dumps(GROW), filler, 1)
    return text.encode(encoding or "utf-8")


def _content_type() -> tuple[str, bytes]:
    return (Header.CONTENT_TYPE.value, b"application/json")


def _headers(spec: Mapping[str, Any], value: bytes | None, keys: Keys) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """Signature headers as the spec asks: the right key or a forged one, a batch position, tampering after signing."""
    key = keys.signing_key(
        str(spec.get("key", "court-dev")), forged=bool(spec.get("forged")), header_key_id=spec.get("key_id_header")
    )
    authority = str(spec.get("authority", COURT))
    batch = spec.get("batch", {})
    size, index = int(batch.get("size", 1)), int(batch.get("index", 0))
    values = [f'{{"filler": {n}}}'.encode() for n in range(size)]
    values[index] = value or b""
    headers = signature_headers(key, authority, values)[int(batch.get("claim_index", index))]
    event_type = spec.get("event_type") or (event_type_of(value) if value else None)
    if event_type:
        headers.append((Header.EVENT_TYPE.value, str(event_type).encode()))
    if "tamper" in spec:
        find, replace = spec["tamper"]["find"].encode(), spec["tamper"]["replace"].encode()
        if value is None or find not in value:
            raise ValueError(f"tamper target {find!r} not in the value")
        value = value.replace(find, replace, 1)
    dropped = set(spec.get("drop", []))
    replaced = {name: text.encode() for name, text in spec.get("set", {}).items()}
    replaced |= {name: base64.b64decode(raw) for name, raw in spec.get("set_base64", {}).items()}
    headers = [(name, replaced.get(name, raw)) for name, raw in headers if name not in dropped]
    return value, headers


def _key(spec: object, about: str, placeholders: Mapping[str, str]) -> bytes | None:
    if spec is None:
        return None
    if spec == "listing":
        return about.encode()
    if isinstance(spec, dict) and "text" in spec:
        return str(_substitute(spec["text"], placeholders)).encode()
    if isinstance(spec, dict) and "base64" in spec:
        return base64.b64decode(spec["base64"])
    raise ValueError(f"unknown key spec {spec!r}")


def _mentioned_ids(record: Record) -> set[str]:
    """Listing ids a record could touch: its key and the listing_id in its body, when it has one."""
    ids = {record.key.decode(errors="replace")} if record.key else set()
    try:
        listing = json.loads(record.value or b"").get("listing")
        if isinstance(listing, dict) and isinstance(listing.get("listing_id"), str):
            ids.add(listing["listing_id"])
    except (ValueError, AttributeError, RecursionError):
        pass
    return ids
