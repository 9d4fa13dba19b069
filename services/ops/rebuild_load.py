"""The bulk load of `ops replay --rebuild`: loaders, each over partitions of its own, admit every record through
CopyKeeper's prepare and binary-COPY the changes into the shadow table, whose indexes rebuild.py has dropped.

One loader per core, at most two; with two, each runs in a process of its own (`python -m
services.ops.rebuild_load`, a Share on stdin, progress and the Loaded result on stdout). REBUILD_WORKERS
overrides the count."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import ConsumerRecord, TopicPartition

from schemas.catalogue import schema_name
from services.consumers import store
from services.consumers.copy import CopyKeeper, Prepared
from services.kit.dlq import dead_letter
from services.kit.heap import settle_heap
from services.kit.kafka import idempotent_producer
from services.kit.settings import Settings
from services.kit.signing import Keyring
from services.ops.dlq import KnownLetters
from services.ops.offsets import BoundedRead
from services.ops.progress import ProgressBar
from services.ops.runtime import OneConnection, OpsError, policy_of, reader

WORKERS_ENV = "REBUILD_WORKERS"
MAX_WORKERS = 2  # one per core of the machines this runs on; Kafka and PostgreSQL take what is left
# Below this many records per loader, starting another Python process costs more than it saves.
RECORDS_PER_WORKER = 50_000
# Large fetches: a loader reads whole partitions, and the per-request overhead of small ones dominates.
BULK_READER = {"max_partition_fetch_bytes": 8 << 20, "fetch_max_bytes": 64 << 20, "max_poll_records": 5000}
BULK_RECORDS = 5000
# Young collections every 50,000 allocations rather than 700 (about 1,500 records rather than 25): see bulk_collection.
BULK_GC_THRESHOLD = (50_000, 20, 10)
SPARE_EXIT_S = 10.0
ARRIVAL_BITS = 40  # arrival = loader << 40 | records that loader staged before: unique, and ordered within a loader

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # what PostgreSQL's binary timestamptz counts microseconds from
MICROSECOND = timedelta(microseconds=1)
PG_INFINITY, PG_NEGATIVE_INFINITY = (1 << 63) - 1, -(1 << 63)
LAST_INSTANT = (datetime.max.replace(tzinfo=UTC) - PG_EPOCH) // MICROSECOND
FIRST_INSTANT = (datetime.min.replace(tzinfo=UTC) - PG_EPOCH) // MICROSECOND
NAIVE_INFINITIES = {datetime.max: PG_INFINITY, datetime.min: PG_NEGATIVE_INFINITY}
STAGED = (*store.COLUMNS, "arrival")  # the copy's columns, then the order the loaders read them in
NO_DATA = (None,) * (len(store.COLUMNS) - 2)  # a version marker's columns after its listing and version


# --- the bulk load: loaders, each over its own partitions, into the shadow table ---


@dataclass(frozen=True)
class Span:
    """One partition a loader reads, from `start` to at least `end`."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True)
class Share:
    """What one loader does: its partitions, and the dead letters already written (never written twice)."""

    consumer: str
    loader: int
    spans: list[Span]
    known: list[str]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Share:
        raw = json.loads(text)
        return cls(raw["consumer"], raw["loader"], [Span(**s) for s in raw["spans"]], raw["known"])


@dataclass
class Loaded:
    """What loaders did: counts for the report, and where each partition's reading stopped."""

    records: int = 0
    accepted: int = 0
    rejected: int = 0
    letters_written: int = 0
    letters_skipped: int = 0
    positions: dict[TopicPartition, int] = field(default_factory=dict)

    def add(self, other: Loaded) -> None:
        self.records += other.records
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.letters_written += other.letters_written
        self.letters_skipped += other.letters_skipped
        self.positions.update(other.positions)

    def to_json(self) -> str:
        counts = {k: v for k, v in asdict(self).items() if k != "positions"}
        return json.dumps({**counts, "positions": [[tp.topic, tp.partition, at] for tp, at in self.positions.items()]})

    @classmethod
    def from_json(cls, text: str) -> Loaded:
        raw = json.loads(text)
        positions = {TopicPartition(t, p): at for t, p, at in raw.pop("positions")}
        return cls(**raw, positions=positions)


def worker_count(records: int) -> int:
    wanted = os.environ.get(WORKERS_ENV)
    if wanted is not None:
        if not wanted.isdigit() or int(wanted) < 1:
            raise OpsError(f"{WORKERS_ENV} must be a whole number >= 1, not {wanted!r}")
        return int(wanted)
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1, records // RECORDS_PER_WORKER))


def split(spans: Iterable[Span], loaders: int) -> list[list[Span]]:
    """Partitions dealt to loaders, largest first to the least loaded, so they finish at about the same time."""
    shares: list[list[Span]] = [[] for _ in range(loaders)]
    loads = [0] * loaders
    for span in sorted(spans, key=lambda s: s.end - s.start, reverse=True):
        least = loads.index(min(loads))
        shares[least].append(span)
        loads[least] += span.end - span.start
    return [share for share in shares if share]


@dataclass(frozen=True)
class Bulk:
    settings: Settings
    consumer: str
    known: list[str]
    spares: Spares = field(default_factory=lambda: Spares())  # none started ahead; Spares is defined below

    async def load(self, start: Mapping[TopicPartition, int], end: Mapping[TopicPartition, int]) -> Loaded:
        """Every partition from `start` to `end` into the shadow table, with a progress bar over all loaders."""
        spans = [Span(tp.topic, tp.partition, start[tp], end[tp]) for tp in end if end[tp] > start[tp]]
        total = sum(s.end - s.start for s in spans)
        shares = [Share(self.consumer, n, part, self.known) for n, part in enumerate(split(spans, worker_count(total)))]
        bar = ProgressBar(f"rebuild {self.consumer}", total)
        done = [0] * len(shares)

        def progress(loader: int) -> Callable[[int], None]:
            def update(count: int) -> None:
                done[loader] = count
                bar.update(sum(done))

            return update

        loaded = Loaded()
        try:
            if len(shares) == 1:  # one loader runs here: no process to start (spares are closed below)
                loaded.add(await load_share(self.settings, shares[0], progress(0)))
            elif shares:
                for result in await _in_processes(self.settings, shares, progress, self.spares):
                    loaded.add(result)
        finally:
            await self.spares.close()
        bar.finish()
        return loaded


@contextlib.contextmanager
def bulk_collection() -> Iterator[None]:
    """The cyclic garbage collector tuned for a bulk load, restored after it.

    A loader allocates some thirty container objects per record (the event's models, the headers, the rows), nearly
    all freed by reference counting within the batch; with the default threshold a young collection runs every few
    dozen records and every tenth one walks the batch in flight. What exists before the load (modules, keyring,
    clients) is frozen out of the collector's walks; cycles are still collected, only less often."""
    saved = gc.get_threshold()
    settle_heap()
    gc.set_threshold(*BULK_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()


async def load_share(settings: Settings, share: Share, progress: Callable[[int], None]) -> Loaded:
    """Read a share's partitions, admit every record, COPY the changes into the shadow table, dead-letter the rest.

    It commits no offsets (it has no group): a load is never resumed, an interrupted rebuild starts from nothing."""
    with bulk_collection():
        return await _load_share(settings, share, progress)


async def _load_share(settings: Settings, share: Share, progress: Callable[[int], None]) -> Loaded:
    policy = policy_of(share.consumer)
    shadow = f"{schema_name(share.consumer)}_rebuild"
    conn = await asyncpg.connect(
        settings.database_url,
        # No flush to disk per COPY: the shadow table is durable once the swap commits, as that commit flushes the
        # write-ahead log up to it, loaded rows included; a crash before it leaves a shadow that is dropped anyway.
        server_settings={"search_path": shadow, "application_name": "blacklist-sync-ops", "synchronous_commit": "off"},
    )
    await timestamps_as_microseconds(conn)
    producer = idempotent_producer(settings)
    kafka = reader(settings, None, **BULK_READER)
    letters = KnownLetters(producer, share.known)
    keeper = CopyKeeper(policy, OneConnection(conn), Keyring.load(settings.keyring_path), letters)
    stage = Stager(conn, share.loader, letters, policy.name)
    try:
        await producer.start()
        await kafka.start()
        read = BoundedRead(kafka, {s.tp: s.start for s in share.spans}, fetch_records=BULK_RECORDS)
        await read.begin()

        async def handle(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
            await stage.put(await keeper.prepare(records))

        await read.read_to({s.tp: s.end for s in share.spans}, handle, progress)
        await stage.flush()
        stage.loaded.positions = dict(read.positions)
        stage.loaded.letters_written, stage.loaded.letters_skipped = letters.written, letters.skipped
    finally:
        stage.abandon()
        await kafka.stop()
        await producer.stop()
        await conn.close()
    return stage.loaded


async def timestamps_as_microseconds(conn: asyncpg.Connection) -> None:
    """timestamptz through COPY as the int64 of its binary format (microseconds since 2000-01-01 UTC), computed by
    one exact subtraction: asyncpg's own encoder converts each value to UTC first and cost the loader ~1.6 µs a
    timestamp (two a row), about as much as the row's ten other columns together."""
    await conn.set_type_codec(
        "timestamptz", schema="pg_catalog", encoder=_pg_microseconds, decoder=_from_pg_microseconds, format="tuple"
    )


def _pg_microseconds(moment: datetime) -> tuple[int]:
    """The value asyncpg's own encoder sends, infinities included (it maps the first and the last instant a datetime
    can hold to PostgreSQL's -infinity and infinity)."""
    try:
        since = (moment - PG_EPOCH) // MICROSECOND
    except TypeError:  # no offset: asyncpg's own encoder takes such a value as local time, and so does this one
        if moment in NAIVE_INFINITIES:
            return (NAIVE_INFINITIES[moment],)
        since = (moment.astimezone(UTC) - PG_EPOCH) // MICROSECOND
    if since == LAST_INSTANT:
        return (PG_INFINITY,)
    if since == FIRST_INSTANT:
        return (PG_NEGATIVE_INFINITY,)
    return (since,)


def _from_pg_microseconds(value: tuple[int]) -> datetime:
    """As asyncpg's own decoder: the infinities come back as the naive first and last datetime."""
    if value[0] == PG_INFINITY:
        return datetime.max
    if value[0] == PG_NEGATIVE_INFINITY:
        return datetime.min
    return PG_EPOCH + value[0] * MICROSECOND


@dataclass
class Stager:
    """Binary COPY of prepared batches into the shadow table, one in flight while the next is read and admitted."""

    conn: asyncpg.Connection
    loader: int
    letters: KnownLetters
    consumer: str
    loaded: Loaded = field(default_factory=Loaded)
    staged: int = 0
    pending: asyncio.Task[None] | None = None

    async def put(self, prepared: Prepared) -> None:
        await self.flush()  # one COPY at a time on the connection, and batches stored in the order they were read
        rows = self._rows(prepared)
        self.pending = asyncio.create_task(self._store(rows, prepared))

    async def flush(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            await pending

    def abandon(self) -> None:
        if self.pending is not None:
            self.pending.cancel()

    async def _store(self, rows: list[tuple[object, ...]], prepared: Prepared) -> None:
        if rows:
            await self.conn.copy_records_to_table("listings", records=rows, columns=STAGED)
        if prepared.rejected:  # once the batch's changes are stored, as CopyKeeper's apply does
            await dead_letter(self.letters, self.consumer, prepared.rejected)
        self.loaded.records += prepared.records
        self.loaded.accepted += len(prepared.changes)
        self.loaded.rejected += prepared.dead_lettered

    def _rows(self, prepared: Prepared) -> list[tuple[object, ...]]:
        """COPY rows in the order the records were read, each tagged with its arrival (equal versions keep the first).

        A copy row is already the COPY columns in order (store checks CopyRow against them), its restrictions a
        tuple that COPY encodes as the text[] it is: the row is that tuple with the arrival added."""
        rows: list[tuple[object, ...]] = []
        append = rows.append
        arrival = (self.loader << ARRIVAL_BITS) + self.staged
        for change in prepared.changes:
            r = change.row
            append((change.listing_id, change.version, *NO_DATA, arrival) if r is None else (*r, arrival))
            arrival += 1
        self.staged += len(rows)
        return rows


# --- loaders in processes of their own: `python -m services.ops.rebuild_load` reads a Share on stdin ---

LOADER_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "AUTHORITY_KEYRING", "BLACKLIST_SYNC_HOME")


def _loader_env(settings: Settings) -> dict[str, str]:
    given = (settings.kafka_bootstrap_servers, settings.database_url, str(settings.keyring_path), str(settings.home))
    return {**os.environ, **dict(zip(LOADER_ENV, given, strict=True))}


@dataclass
class Spares:
    """Loader processes started before their shares are known, so that their start (the imports take most of a
    second) overlaps the rebuild's own preparations; each waits for its share on stdin, one given none exits."""

    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings, count: int) -> Spares:
        spares = cls()
        env = _loader_env(settings)
        try:
            for _ in range(count):
                spares.processes.append(await _start_loader(env))
        except BaseException:
            await spares.close()
            raise
        return spares

    def take(self) -> asyncio.subprocess.Process | None:
        return self.processes.pop() if self.processes else None

    async def close(self) -> None:
        """Those never given a share: end of stdin tells them to exit; killed if they do not."""
        while self.processes:
            process = self.processes.pop()
            if process.stdin is not None and not process.stdin.is_closing():
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), SPARE_EXIT_S)
            except TimeoutError:
                process.kill()
                await process.wait()


def spares_wanted() -> int:
    """Processes a large rebuild would start: none when it would load in this process."""
    most = worker_count(RECORDS_PER_WORKER * MAX_WORKERS)
    return most if most > 1 else 0


async def _start_loader(env: Mapping[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.ops.rebuild_load",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=dict(env),
    )


async def _in_processes(
    settings: Settings, shares: Sequence[Share], progress: Callable[[int], Callable[[int], None]], spares: Spares
) -> list[Loaded]:
    """One process per share (a spare if one is left), following their progress lines; the first failure stops them all."""
    env = _loader_env(settings)
    processes = []
    try:
        for share in shares:
            process = spares.take() or await _start_loader(env)
            processes.append(process)
            assert process.stdin is not None
            process.stdin.write(share.to_json().encode() + b"\n")
            await process.stdin.drain()
            process.stdin.close()
        return list(
            await asyncio.gather(
                *(_follow(p, share.loader, progress(share.loader)) for p, share in zip(processes, shares, strict=True))
            )
        )
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def _follow(process: asyncio.subprocess.Process, loader: int, progress: Callable[[int], None]) -> Loaded:
    """A loader's stdout: `progress N` lines, then `done {json}` or `failed reason`."""
    assert process.stdout is not None
    result: Loaded | None = None
    failure = "exited without a result"
    async for raw in process.stdout:
        verb, _, rest = raw.decode().rstrip("\n").partition(" ")
        if verb == "progress":
            progress(int(rest))
        elif verb == "done":
            result = Loaded.from_json(rest)
        elif verb == "failed":
            failure = rest
    code = await process.wait()
    if code != 0 or result is None:
        raise OpsError(f"rebuild loader {loader} failed (exit {code}): {failure}")
    return result


def _loader_main() -> int:
    """A loader process: its share on stdin, protocol lines on stdout (everything else it prints goes to stderr)."""
    out, sys.stdout = sys.stdout, sys.stderr
    line = sys.stdin.readline()
    if not line.strip():  # a spare process that was given no share
        return 0
    share = Share.from_json(line)

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    try:
        loaded = asyncio.run(load_share(Settings.from_env(), share, lambda done: say(f"progress {done}")))
    except Exception as exc:  # the parent turns this into the command's one-line reason
        say(f"failed {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return 1
    say(f"done {loaded.to_json()}")
    return 0


if __name__ == "__main__":
    sys.exit(_loader_main())
