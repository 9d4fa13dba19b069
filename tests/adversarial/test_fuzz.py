"""A hypothesis fuzzer of hostile records end to end: each comes back from the real DLQ with an allowed reason, none applied."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services import runner
from tests.adversarial.hostile import Hostile, hostile_records
from tests.adversarial.probes import Victim, check, normal_listing_propagates, report
from tests.adversarial.records import CONSUMER, COURT_TOPIC, DlqWatcher, Keys, copy_rows, produce
from tests.conftest import Infra
from tests.integration.helpers import fresh_person, wait_caught_up

pytestmark = pytest.mark.integration
MAX_EXAMPLES = 12  # batches of 4 to 10 records: about a hundred hostile records, some over the value size limit

TRIED: Counter[str] = Counter()
REASONS: Counter[str] = Counter()
APPLIED_WRONGLY: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if TRIED:
        report(
            request.config,
            f"fuzzer: {sum(TRIED.values())} hostile records tried, by kind {dict(sorted(TRIED.items()))}",
            f"  dead-lettered by reason: {dict(sorted(REASONS.items()))} (total {sum(REASONS.values())})",
            f"  applied wrongly (copy changed): {len(APPLIED_WRONGLY)} {APPLIED_WRONGLY or ''}",
        )


# No shrinking: each example is a round trip through Kafka, and an unshrunk counterexample is reported as it is.
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_fuzzed_hostile_records_are_dead_lettered_with_an_allowed_reason_and_change_nothing(
    data: st.DataObject,
    infra: Infra,
    keys: Keys,
    producer: AIOKafkaProducer,
    dlq: DlqWatcher,
    victim: Victim,
    consumer_process: runner.RunningService,
) -> None:
    batch: list[Hostile] = data.draw(st.lists(hostile_records(keys, fresh_person(), victim.listing_id), min_size=4, max_size=10))
    watched = {h.listing_id for h in batch} | {victim.listing_id}
    before = await copy_rows(infra.database_url, watched)

    await produce(producer, [h.record for h in batch])
    letters = await dlq.wait_for([h.record.label for h in batch], timeout=60)
    await wait_caught_up(infra.bootstrap_servers, CONSUMER, COURT_TOPIC, timeout=60)
    after = await copy_rows(infra.database_url, watched)

    TRIED.update(h.kind for h in batch)
    REASONS.update(letter.reason for letter in letters.values())
    APPLIED_WRONGLY.extend(sorted(i for i in watched if before.get(i) != after.get(i)))
    for h in batch:
        letter = letters.get(h.record.label)
        size = len(h.record.value or b"")
        assert letter is not None, f"{h.kind} record of {size} bytes was not dead-lettered"
        assert letter.reason in h.allowed, f"{h.kind}: {letter.reason} ({letter.detail}); allowed {sorted(h.allowed)}"
        assert (letter.key, letter.value) == (h.record.key, h.record.value), "the DLQ keeps the original key and value"
    assert after == before, "a hostile record changed the copy"


async def test_consumer_still_applies_a_normal_listing_and_the_victim_still_blocks_after_the_fuzzer(
    victim: Victim, keys: Keys, producer: AIOKafkaProducer, consumer_process: runner.RunningService
) -> None:
    await normal_listing_propagates(producer, keys, consumer_process.url)

    assert (await check(consumer_process.url, victim.subject_id))["allowed"] is False
