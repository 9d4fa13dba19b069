"""The publish-to-apply histogram samples a bounded number of records from each applied batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from services.consumers.copy import CopyKeeper
from services.consumers.policy import ConsumerPolicy
from services.consumers.registry import POLICIES
from services.kit import metrics


def delay_samples(policy: ConsumerPolicy) -> float:
    value = REGISTRY.get_sample_value("blacklist_publish_to_apply_seconds_count", {"consumer": policy.name})
    return value or 0.0


@pytest.mark.parametrize(("records", "samples"), [(1, 1), (3, 3), (8, 8), (9, 5), (12, 6), (63, 8), (2000, 8)])
def test_a_batch_adds_at_most_the_sample_limit_to_the_delay_histogram(records: int, samples: int) -> None:
    policy = POLICIES["airline"]
    keeper = CopyKeeper(policy, None, None, None, retention=timedelta(days=1))  # type: ignore[arg-type]
    occurred = [datetime.now(UTC) - timedelta(milliseconds=n) for n in range(records)]
    before = delay_samples(policy)

    keeper._observe(records, records, occurred)

    assert delay_samples(policy) - before == samples <= metrics.DELAY_SAMPLES_PER_BATCH
