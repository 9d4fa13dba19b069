"""One consumer worker process of the consumer bench: the consumer's own subscriber, pipeline and CopyKeeper, in the
consumer group and copy it is told, as one process of `faststream run ... --workers N` would be. It reports what it
applies to the bench, which runs several of them side by side (bench/consumer.py `workers_rate`).

Protocol: a JSON line on stdin (`topic`, `schema`, `group`); the worker answers `ready` once connected, starts
consuming at `go`, stops at end of stdin. On stdout: `first T` when its first batch is fetched, `applied T ENDS`
after each committed transaction (ENDS: JSON {partition: offset after the last record applied}), finally
`verifications N`. T is time.monotonic(), the same clock in every process of the machine."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from aiokafka import ConsumerRecord

from bench.harness import use_service_event_loop
from bench.workspace import POLICY, Workspace, consumer_broker
from services.consumers.copy import BatchOutcome, CopyKeeper, Prepared
from services.consumers.pipeline import APPLY_CONNECTIONS
from services.kit.db import HeldConnection
from services.kit.heap import settle_heap
from services.kit.kafka import idempotent_producer
from services.kit.settings import Settings
from services.kit.signing import Keyring


class ReportingKeeper(CopyKeeper):
    """The real apply path, telling the bench when it fetched first and where each commit left each partition."""

    def __init__(self, *args: object, out: TextIO, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.out = out
        self.started = False

    async def prepare(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> Prepared:
        if not self.started:
            self.started = True
            self.say(f"first {time.monotonic()}")
        return await super().prepare(records)

    async def apply(self, prepared: Prepared) -> BatchOutcome:
        outcome = await super().apply(prepared)
        ends: dict[int, int] = {}
        for r in prepared.batch:
            ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
        self.say(f"applied {time.monotonic()} {json.dumps(ends)}")
        return outcome

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


async def work(out: TextIO) -> None:
    job = json.loads(sys.stdin.readline())
    settings = Settings.from_env()
    workspace = Workspace(settings, "worker", job["topic"], job["schema"])
    pool = await workspace.pool()
    dlq = idempotent_producer(settings)
    await dlq.start()
    keyring = Keyring.load(settings.keyring_path)
    # As the consumer service applies: asynchronous commits on connections of their own, settled on the pool.
    apply_pool = await workspace.pool(synchronous_commit=False)
    applying = HeldConnection(apply_pool, keep=APPLY_CONNECTIONS)
    keeper = ReportingKeeper(POLICY, applying, keyring, dlq, settling=pool, out=out)
    loop = asyncio.get_running_loop()
    try:
        async with consumer_broker(settings, keeper, job["topic"], job["group"]) as broker:
            keeper.say("ready")
            if (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "go":
                settle_heap()  # as the service does at the end of its start-up
                await broker.start()
                await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin
    finally:
        await dlq.stop()
        await applying.close()
        await apply_pool.close()
        await pool.close()
    keeper.say(f"verifications {keyring.verifications}")


def main() -> None:
    out, sys.stdout = sys.stdout, sys.stderr  # FastStream logs to stdout: the protocol keeps the real one
    use_service_event_loop()
    asyncio.run(work(out))


if __name__ == "__main__":
    main()
