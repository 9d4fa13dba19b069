"""`blacklist-sync bench`: run the benchmarks, each against a baseline measured in the same run; print a table and a JSON line.

The consumer and latency benches use a topic and schema of their own on the stack they are pointed at (dropped
afterwards); the others need the contract's topics and schemas, so they run on a scratch stack of the bench's
own (bench/stack.py). Progress goes to stderr; the table and the JSON line to stdout."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.harness import Figure, Skipped, json_line, progress, render, use_service_event_loop, write_json

if TYPE_CHECKING:
    from bench.stack import ScratchStack
    from services.kit.settings import Settings

BENCHES = ("consumer", "latency", "check-api", "propagation", "publisher", "memory", "rebuild")
ON_SCRATCH = frozenset({"check-api", "propagation", "publisher", "memory", "rebuild"})


@dataclass(frozen=True)
class Size:
    consumer: int  # records applied
    latency_rate: int  # records/s of the paced stream
    latency_seconds: float  # measured, after latency_warm_up_s at the same rate that no figure counts
    check_listings: int  # listings in the airline copy under the check API load
    http_seconds: float  # each wrk run
    propagation: int  # publish/revoke round trips
    listings: int  # the memory bench's copy, and what the rebuild rebuilds
    boot_scratch_early: bool  # boot the scratch stack while the first benches run (it would disturb full-size figures)
    # The first seconds of the paced stream, on both sides: the target is the latency at a steady rate, and the
    # notes keep the figures with these seconds counted too. The bench starts Kafka itself, and a broker that has
    # just started serves small requests slowly for 10-20 s while its JIT compiles them (per second from a cold
    # start, the raw reader's p50 went 13.4, 10.1, ~4 until 10 s, ~2.8 until 20 s, then ~2.6 ms).
    latency_warm_up_s: float = 0.0


SIZES = {
    "tiny": Size(2_000, 200, 2.0, 1_000, 1.0, 3, 5_000, boot_scratch_early=True, latency_warm_up_s=0.5),
    "full": Size(200_000, 2_000, 20.0, 100_000, 10.0, 20, 1_000_000, boot_scratch_early=False, latency_warm_up_s=20.0),
}


def figure_names() -> dict[str, tuple[str, ...]]:
    """Every figure each bench reports (imported late: `blacklist-sync --help` must not load Kafka clients)."""
    from bench import check_api, consumer, latency, memory, propagation, publisher, rebuild

    return {
        "consumer": consumer.NAMES,
        "latency": latency.NAMES,
        "check-api": check_api.NAMES,
        "propagation": propagation.NAMES,
        "publisher": publisher.NAMES,
        "memory": memory.NAMES,
        "rebuild": rebuild.NAMES,
    }


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: bool = False

    def skip(self, names: Sequence[str], reason: str) -> None:
        progress(f"not measured: {', '.join(names)}: {reason}")
        self.skipped += [Skipped(name, reason) for name in names]

    def attempt(self, names: Sequence[str], measure: Callable[[], list[Figure]], keep: bool = True) -> list[Figure]:
        """Run one bench; a failure is reported as a gap in the table (and a non-zero exit), and the run goes on."""
        try:
            figures = measure()
        except Exception as exc:  # one broken bench must not hide the others' figures
            self.fail(names, exc)
            return []
        if keep:
            self.figures += figures
        return figures

    def fail(self, names: Sequence[str], exc: BaseException) -> None:
        """Every figure of `names` not yet reported becomes a gap naming the failure."""
        self.failed = True
        reported = {f.name for f in self.figures} | {s.name for s in self.skipped}
        first_line = str(exc).splitlines()[0] if str(exc) else "(no message)"
        self.skip([n for n in names if n not in reported], f"failed: {type(exc).__name__}: {first_line}")


def _on_given_stack(size: Size, only: set[str], report: Report) -> None:
    from bench import consumer, latency
    from services.kit.settings import Settings

    settings = Settings.from_env()
    if "consumer" in only:
        report.attempt(consumer.NAMES, lambda: asyncio.run(consumer.run(settings, size.consumer)))
    if "latency" in only:
        pace = latency.Pace(size.latency_rate, size.latency_seconds, size.latency_warm_up_s)
        report.attempt(latency.NAMES, lambda: asyncio.run(latency.run(settings, pace)))


def _with_services(scratch: ScratchStack, size: Size, only: set[str], report: Report) -> None:
    """Check API and propagation with court + airline running, then the publisher alone, on the scratch stack."""
    from bench import check_api, memory, propagation, publisher, wrk
    from bench.stack import largest_worker_status_kb
    from services import runner

    settings = scratch.settings()
    if not wrk.available():
        progress(wrk.INSTALL_HINT)
    services = scratch.start_services(["court", "airline"], workers={"court": publisher.COURT_WORKERS})
    court, airline = services["court"], services["airline"]
    court_at_start = largest_worker_status_kb(court.process.pid)
    try:
        if "check-api" in only and wrk.available():
            report.attempt(
                check_api.NAMES,
                lambda: asyncio.run(check_api.measure(settings, airline.url, size.check_listings, size.http_seconds)),
            )
        elif "check-api" in only:
            report.skip(check_api.NAMES, wrk.INSTALL_HINT)
        if "propagation" in only:
            report.attempt(propagation.NAMES, lambda: propagation.figures(court.url, airline.url, size.propagation))
        runner.stop([airline])  # the publisher's figures are the publisher's alone
        wanted = [*(publisher.NAMES if "publisher" in only else ()), *(memory.NAMES[1:] if "memory" in only else ())]
        if wanted and not wrk.available():
            report.skip(wanted, wrk.INSTALL_HINT)
        elif wanted:
            measure = lambda: asyncio.run(publisher.measure(settings, court.url, size.http_seconds))  # noqa: E731
            figures = report.attempt(wanted, measure, keep="publisher" in only)
            if figures and "memory" in only:
                report.figures.append(memory.publisher_peak(court, court_at_start))
    finally:
        runner.stop(services.values())


def _on_scratch(scratch: ScratchStack, size: Size, only: set[str], report: Report) -> None:
    """The memory bench's listings and the rebuild first, then the services benches.

    The target is a rebuild from size.listings listings: run after the publisher, propagation and check benches,
    it would also read the listings those put onto court.listings.v1 (some 160,000 at full size) and time a larger
    rebuild than the one stated. The airline service started afterwards resumes at its group's committed offsets
    (the memory bench's service committed them all; the rebuild reads through a temporary group of its own), so it
    does not read the million records again."""
    from bench import memory

    settings = scratch.settings()
    if "memory" in only:
        report.attempt(memory.NAMES[:1], lambda: [memory.consumer_peak(scratch, settings, size.listings)])
    if "rebuild" in only:
        _rebuild(scratch, settings, size, only, report)
    if only & {"check-api", "propagation", "publisher", "memory"}:
        try:
            _with_services(scratch, size, only, report)
        except Exception as exc:  # the services did not start
            names = figure_names()
            report.fail([*names["check-api"], *names["propagation"], *names["publisher"], *names["memory"][1:]], exc)


def _rebuild(scratch: ScratchStack, settings: Settings, size: Size, only: set[str], report: Report) -> None:
    """The rebuild over exactly the listings the memory bench produced (or, without it, produced here)."""
    from bench import memory, rebuild
    from bench.workspace import produce
    from schemas.catalogue import FAMILIES

    if (gap := rebuild.available()) is not None:
        report.skipped.append(gap)
        return
    if "memory" not in only:  # the memory bench put the listings there; without it the rebuild has nothing to rebuild
        progress(f"rebuild bench: producing {size.listings:,} listings to {FAMILIES['court'].topic}")
        chunks = memory.listing_chunks(settings, size.listings, "rebuild")
        asyncio.run(produce(settings, FAMILIES["court"].topic, chunks))
    else:  # the memory bench's service has just applied the million rows: their autovacuum is that bench's aftermath
        rebuild.settle(settings)
    report.attempt(rebuild.NAMES, lambda: [rebuild.measure(scratch, settings, size.listings)])
    if only & {"check-api", "propagation", "publisher"}:
        rebuild.settle(settings)


def _run_all(home: Path, size: Size, only: set[str], report: Report) -> None:
    from bench.stack import ScratchStack

    scratch = ScratchStack.boot(home) if size.boot_scratch_early and only & ON_SCRATCH else None
    try:
        _on_given_stack(size, only, report)
        if only & ON_SCRATCH:
            scratch = scratch or ScratchStack.boot(home)
            try:
                scratch.wait()
                _on_scratch(scratch, size, only, report)
            except Exception as exc:  # the scratch stack or its services: the given stack's figures still print
                names = figure_names()
                report.fail([n for bench in BENCHES if bench in only & ON_SCRATCH for n in names[bench]], exc)
    finally:
        if scratch is not None:
            scratch.down()


def run(args: argparse.Namespace) -> int:
    from services import localinfra

    size = SIZES[args.size]
    only = set(args.only or BENCHES)
    use_service_event_loop()
    started, load_at_start = time.monotonic(), os.getloadavg()
    was_running = localinfra.is_running()
    report = Report()
    # SIGTERM unwinds like Ctrl-C, so the scratch stack is stopped and removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        stack = localinfra.up(progress=progress)  # inside: an `up` that fails halfway still stops what it started
        # FastStream's access logger writes to stdout: while the benches run, stdout is stderr, so that stdout
        # holds only the table and the JSON line.
        with contextlib.redirect_stdout(sys.stderr):
            _run_all(stack.home, size, only, report)
    finally:
        if not was_running:  # as scripts/test.sh does: a stack the bench started is not left holding the ports
            localinfra.down(progress=progress)
    if args.size != "full":
        for figure in report.figures:
            figure.met = None  # the targets are stated for the full sizes
    context = {
        "size": args.size,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.monotonic() - started, 1),
    }
    _print(report, context, args.out)
    return 1 if report.failed else 0


def _print(report: Report, context: dict[str, object], out: Path | None) -> None:
    print(render(report.figures, report.skipped))
    print(
        f"size {context['size']}, {context['cpus']} CPUs, load average (1/5/15 min) {context['load_average_at_start']} at start,"
        f" {context['load_average_at_end']} at end, {context['seconds']} s; targets are judged for --size full only"
    )
    line = json_line(report.figures, report.skipped, context)
    print(line)
    if out is not None:
        write_json(out, line)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = sub.add_parser("bench", help="benchmarks with same-run baselines (table + JSON line)")
    bench.add_argument("--size", choices=sorted(SIZES), default="full")
    bench.add_argument("--only", action="append", choices=BENCHES, help="run only these (repeatable)")
    bench.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON line to FILE")
    bench.set_defaults(func=run)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *sys.argv[1:]])
    sys.exit(args.func(args))
