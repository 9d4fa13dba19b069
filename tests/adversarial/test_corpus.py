"""The committed corpus of hostile records end to end: real listing topics, real DLQ, the copy in PostgreSQL unchanged."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from services import runner
from tests.adversarial.corpus import NO_OP, BuiltCase, Subjects, build, load_corpus
from tests.adversarial.probes import Victim, caught_up, check, normal_listing_propagates, report
from tests.adversarial.records import DeadLetter, DlqWatcher, Keys, copy_rows, produce
from tests.conftest import Infra
from tests.integration.helpers import fresh_person

pytestmark = pytest.mark.integration
CASES = load_corpus()


@dataclass(frozen=True)
class CorpusRun:
    """Everything the corpus did: each case's records, the copy before and after the attack, the dead letters."""

    cases: dict[str, BuiltCase]
    before: dict[str, dict[str, Any]]
    after: dict[str, dict[str, Any]]
    letters: dict[str, DeadLetter]
    stalled: str | None

    def changed(self, built: BuiltCase) -> list[str]:
        return sorted(i for i in built.listing_ids if self.before.get(i) != self.after.get(i))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def corpus_run(
    request: pytest.FixtureRequest,
    infra: Infra,
    keys: Keys,
    producer: AIOKafkaProducer,
    dlq: DlqWatcher,
    victim: Victim,
) -> CorpusRun:
    """Set up every case's valid history, snapshot the copy, produce every attack, collect dead letters, snapshot again."""
    run = uuid.uuid4().hex[:8]
    built = {c.name: build(c, keys, Subjects(run, victim.listing_id, victim.subject_id, fresh_person())) for c in CASES}
    ids = set().union(*(b.listing_ids for b in built.values()))
    await produce(producer, [r for b in built.values() for r in b.setup])
    await caught_up(infra)
    before = await copy_rows(infra.database_url, ids)
    await produce(producer, [r for b in built.values() for r in b.attack])
    labels = [r.label for b in built.values() for r in b.attack]
    await dlq.wait_for([r.label for b in built.values() if b.case.expect != NO_OP for r in b.attack], timeout=60)
    stalled = None
    try:
        await caught_up(infra)
    except AssertionError as exc:  # a record that stops the consumer: every test below reports it
        stalled = str(exc)
    letters = await dlq.wait_for(labels, timeout=1)  # once caught up, every dead letter is already in the topic
    after = await copy_rows(infra.database_url, ids)
    outcome = CorpusRun(built, before, after, letters, stalled)
    report(request.config, *summary(outcome))
    return outcome


def summary(outcome: CorpusRun) -> list[str]:
    attacks = [r for b in outcome.cases.values() for r in b.attack]
    reasons = Counter(letter.reason for letter in outcome.letters.values())
    wrong = [name for name, b in outcome.cases.items() if outcome.changed(b)]
    no_ops = [name for name, b in outcome.cases.items() if b.case.expect == NO_OP and not outcome.changed(b)]
    return [
        f"adversarial corpus: {len(attacks)} hostile records in {len(outcome.cases)} cases",
        f"  dead-lettered by reason: {dict(sorted(reasons.items()))} (total {sum(reasons.values())})",
        f"  no-op cases left the copy unchanged: {len(no_ops)}",
        f"  applied wrongly (copy changed): {len(wrong)} {wrong if wrong else ''}",
    ]


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_hostile_record_is_dead_lettered_with_the_contract_reason_or_is_a_no_op(name: str, corpus_run: CorpusRun) -> None:
    built = corpus_run.cases[name]
    if corpus_run.stalled:
        pytest.fail(f"the consumer stopped making progress: {corpus_run.stalled}")
    for record in built.attack:
        letter = corpus_run.letters.get(record.label)
        if built.case.expect == NO_OP:
            assert letter is None, f"a valid older record was dead-lettered: {letter}"
            continue
        assert letter is not None, f"{name}: no dead letter (expected {built.case.expect})"
        assert letter.reason == built.case.expect, f"{name}: {letter.reason} ({letter.detail})"
        assert letter.detail
        assert letter.key == record.key and letter.value == record.value, "the DLQ keeps the original key and value bytes"
        assert letter.source.startswith(f"{record.topic}/")
        for header, original in record.headers:
            assert letter.headers.get(header) == original, f"original header {header} kept"
    assert corpus_run.changed(built) == [], f"{name} changed the copy: {built.listing_ids}"


@pytest.mark.parametrize("name", [c.name for c in CASES if c.setup])
def test_history_a_no_op_is_measured_against_was_applied_first(name: str, corpus_run: CorpusRun) -> None:
    built = corpus_run.cases[name]
    newest = built.setup[-1]
    row = corpus_run.before.get((newest.key or b"").decode())
    assert row is not None, "the setup history never reached the copy, so the no-op would prove nothing"
    assert row["version"] == len(built.setup)


async def test_victim_listing_survives_every_forged_revocation_and_amendment(
    corpus_run: CorpusRun, victim: Victim, consumer_process: runner.RunningService
) -> None:
    aimed = [b.case.name for b in corpus_run.cases.values() if victim.listing_id in b.listing_ids]

    answer = await check(consumer_process.url, victim.subject_id)

    assert len(aimed) >= 5, "the corpus aims several attacks at the victim"
    assert corpus_run.after[victim.listing_id] == corpus_run.before[victim.listing_id]
    assert corpus_run.after[victim.listing_id]["version"] == 1
    assert answer["allowed"] is False


async def test_consumer_still_applies_a_normal_listing_after_the_corpus(
    corpus_run: CorpusRun, keys: Keys, producer: AIOKafkaProducer, consumer_process: runner.RunningService
) -> None:
    await normal_listing_propagates(producer, keys, consumer_process.url)
