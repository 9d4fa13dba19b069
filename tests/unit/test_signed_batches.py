"""How a publisher splits a turn into signed batches: a partition's large share alone, the small shares together."""

from __future__ import annotations

from services.kit.signing import PARTITION_BATCH_FROM, signed_batches


def test_each_large_share_is_a_batch_and_the_small_shares_one_batch_all_in_the_order_given() -> None:
    large = PARTITION_BATCH_FROM
    items = [(0, n) for n in range(large)] + [(1, n) for n in range(3)] + [(2, n) for n in range(large + 1)] + [(3, 0)]
    items = items[::2] + items[1::2]  # interleaved, as keys fall on partitions

    batches = signed_batches(items, lambda item: item[0])

    assert sorted(len(b) for b in batches) == sorted([large, large + 1, 4])
    for batch in batches:
        assert batch == [item for item in items if item in batch], "a batch keeps the order given"
    assert {item[0] for b in batches if len(b) == 4 for item in b} == {1, 3}
    assert sum(len(b) for b in batches) == len(items)


def test_a_turn_of_only_small_shares_is_one_batch_and_of_only_large_shares_one_per_partition() -> None:
    few = [(n % 6, n) for n in range(30)]
    many = [(n % 6, n) for n in range(6 * PARTITION_BATCH_FROM)]

    assert signed_batches(few, lambda item: item[0]) == [few]
    assert [len(b) for b in signed_batches(many, lambda item: item[0])] == [PARTITION_BATCH_FROM] * 6
