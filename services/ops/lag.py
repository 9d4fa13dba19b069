"""`ops lag`: per consumer group and partition, the committed offset, the end offset and the lag."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiokafka import TopicPartition

from services.kit.settings import Settings
from services.ops.offsets import coordinated
from services.ops.runtime import admin, reader


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(self.end - self.committed, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "end": self.end,
            "lag": self.lag,
        }


async def consumer_groups(settings: Settings) -> list[str]:
    """Every consumer group the cluster knows (classic ones and those that only commit offsets)."""
    client = admin(settings)
    await client.start()
    try:
        listed = await client.list_consumer_groups()
    finally:
        await client.close()
    return sorted({str(entry[0]) for entry in listed if entry[1] in ("consumer", "")})


async def collect(settings: Settings, groups: Sequence[str]) -> dict[str, list[PartitionLag]]:
    """Committed offsets of each group, against the end offsets Kafka reports now; a group without any is empty."""
    client = admin(settings)
    kafka = reader(settings)
    await client.start()
    await kafka.start()
    try:
        committed = {group: await coordinated(partial(client.list_consumer_group_offsets, group)) for group in groups}
        partitions = sorted({tp for offsets in committed.values() for tp in offsets})
        ends: dict[TopicPartition, int] = dict(await kafka.end_offsets(partitions)) if partitions else {}
    finally:
        await kafka.stop()
        await client.close()
    return {
        group: [
            PartitionLag(group, tp.topic, tp.partition, meta.offset, ends[tp])
            for tp, meta in sorted(offsets.items())
            if meta.offset >= 0
        ]
        for group, offsets in committed.items()
    }


def render(lags: dict[str, list[PartitionLag]]) -> str:
    header = ("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG")
    rows = [(r.group, r.topic, str(r.partition), str(r.committed), str(r.end), str(r.lag)) for rs in lags.values() for r in rs]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]
    for group, rs in lags.items():
        if rs:
            lines.append(f"{group}: lag {sum(r.lag for r in rs):,} over {len(rs)} partitions")
        else:
            lines.append(f"{group}: no committed offsets (never ran, or the group was deleted or reset)")
    return "\n".join(lines)
