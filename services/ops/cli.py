"""`blacklist-sync ops …` (CONTRACT section 8): argument parsing and printing; the work lives in the sibling modules."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from schemas.catalogue import CONSUMERS
from services.kit.settings import Settings
from services.ops.runtime import OpsError

if TYPE_CHECKING:
    from services.ops.reconcile import Findings

SHOWN_DRIFTS = 100


def _run(work: Coroutine[Any, Any, int]) -> int:
    """Run one command; database errors become the one-line reason the contract asks for."""
    try:
        return asyncio.run(work)
    except asyncpg.PostgresError as exc:
        raise OpsError(f"database: {exc}".splitlines()[0]) from exc


def _fail(message: str) -> int:
    print(f"blacklist-sync: {message}", file=sys.stderr)
    return 1


def utc_time(text: str) -> datetime:
    """--to-datetime: RFC 3339 with an offset (2026-11-26T10:00:00Z); a time without one is ambiguous."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time such as 2026-11-26T10:00:00Z") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; write it as 2026-11-26T10:00:00Z")
    return moment


def cmd_lag(args: argparse.Namespace) -> int:
    from services.ops.lag import collect, consumer_groups, render

    async def work() -> int:
        settings = Settings.from_env()
        groups = args.groups or await consumer_groups(settings) or list(CONSUMERS)
        lags = await collect(settings, groups)
        if args.json:
            print(json.dumps([r.as_dict() for rows in lags.values() for r in rows], indent=2))
        else:
            print(render(lags))
        return 0

    return _run(work())


def cmd_replay(args: argparse.Namespace) -> int:
    from services.ops.rebuild import rebuild
    from services.ops.replay import replay

    if args.rebuild and args.to_datetime is not None:
        return _fail("--rebuild builds the copy from the earliest offsets; --to-datetime applies only without --rebuild")

    async def work() -> int:
        settings = Settings.from_env()
        if args.rebuild:
            print((await rebuild(settings, args.consumer)).text())
        else:
            print((await replay(settings, args.consumer, args.to_datetime)).text())
        return 0

    return _run(work())


def cmd_dlq_list(args: argparse.Namespace) -> int:
    from services.ops.dlq import read_letters

    async def work() -> int:
        letters = await read_letters(Settings.from_env(), args.consumer)
        if args.json:
            print(json.dumps([letter.as_dict() for letter in letters], indent=2, ensure_ascii=False))
            return 0
        for letter in letters:
            row = letter.as_dict()
            print(
                f"{row['dlq']:<10} {row['at']}  {row['reason']:<22} {row['source']:<28} "
                f"listing={row['listing_id'] or '-'}  event={row['event_id'] or '-'}  {row['detail']}"
            )
        print(f"{len(letters)} dead letters in {args.consumer}.dlq.v1")
        return 0

    return _run(work())


def cmd_dlq_redrive(args: argparse.Namespace) -> int:
    from services.ops.dlq import redrive

    async def work() -> int:
        results = await redrive(Settings.from_env(), args.consumer, args.event_id)
        for r in results:
            reason = f" ({r.reason})" if r.reason else ""
            print(f"{r.letter.partition}/{r.letter.offset}  {r.outcome}{reason}  listing={r.letter.listing_id or '-'}")
        counts = {kind: sum(r.outcome == kind for r in results) for kind in ("applied", "no_op", "dead_lettered")}
        print(
            f"redrove {len(results)} dead letters of {args.consumer}: {counts['applied']} applied, "
            f"{counts['no_op']} no-op (the copy already held that version or newer), "
            f"{counts['dead_lettered']} dead-lettered again"
        )
        if counts["dead_lettered"]:
            again = counts["dead_lettered"]
            return _fail(f"{again} redriven records were refused again; see `blacklist-sync ops dlq list {args.consumer}`")
        return 0

    return _run(work())


def cmd_reconcile(args: argparse.Namespace) -> int:
    from services.ops.reconcile import find_drift, repair

    async def work() -> int:
        settings = Settings.from_env()
        found = await find_drift(settings, args.consumer)
        _print_findings(found, args.json)
        if not found.drifts:
            return 0
        if not args.repair:
            return _fail(f"drift in {args.consumer}: {found.summary()}; `ops reconcile {args.consumer} --repair` fixes it")
        repaired = await repair(settings, args.consumer, found.drifts)
        after = await find_drift(settings, args.consumer)
        print(f"repaired {repaired} listings; drift now: {after.summary()}")
        return _fail(f"drift remains in {args.consumer}: {after.summary()}") if after.drifts else 0

    return _run(work())


def _print_findings(found: Findings, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"summary": found.counts(), "drift": [d.as_dict() for d in found.drifts]}, indent=2))
        return
    print(found.header())
    if found.lag:
        print(f"note: the live consumer has {found.lag:,} records still to apply; some drift may be those")
    for drift in found.drifts[:SHOWN_DRIFTS]:
        print(drift.text())
    if len(found.drifts) > SHOWN_DRIFTS:
        print(f"… and {len(found.drifts) - SHOWN_DRIFTS:,} more (--json lists every one)")
    print(f"drift: {found.summary()}")


def register(sub: Any) -> None:
    """Add `ops` and its subcommands to the `blacklist-sync` parser."""
    ops = sub.add_parser("ops", help="lag, replay/rebuild, dead letters and reconcile of consumers' copies")
    commands = ops.add_subparsers(dest="ops_command", required=True)

    lag = commands.add_parser("lag", help="committed offset, end offset and lag per consumer group and partition")
    lag.add_argument("groups", nargs="*", help="consumer groups (default: every group on the cluster)")
    lag.add_argument("--json", action="store_true")
    lag.set_defaults(func=cmd_lag)

    replay = commands.add_parser("replay", help="re-consume the listing topics into a consumer's copy")
    replay.add_argument("consumer", choices=CONSUMERS)
    replay.add_argument("--rebuild", action="store_true", help="build the copy anew in a shadow table, then swap it in")
    start = replay.add_mutually_exclusive_group()
    start.add_argument("--to-earliest", action="store_true", help="from the earliest offsets (the default)")
    start.add_argument("--to-datetime", type=utc_time, metavar="T", help="from the first record at or after T (RFC 3339)")
    replay.set_defaults(func=cmd_replay)

    dlq = commands.add_parser("dlq", help="inspect and re-submit dead letters")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_commands.add_parser("list", help="every dead letter: reason, detail, source, time, listing id")
    listing.add_argument("consumer", choices=CONSUMERS)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_dlq_list)
    redrive = dlq_commands.add_parser("redrive", help="re-submit dead letters through the consumer's normal path")
    redrive.add_argument("consumer", choices=CONSUMERS)
    redrive.add_argument("--event-id", help="only the letters whose value carries this event_id")
    redrive.set_defaults(func=cmd_dlq_redrive)

    reconcile = commands.add_parser("reconcile", help="compare a copy with the authorities' current state")
    reconcile.add_argument("consumer", choices=CONSUMERS)
    reconcile.add_argument("--repair", action="store_true", help="fix missing, extra and stale listings")
    reconcile.add_argument("--json", action="store_true")
    reconcile.set_defaults(func=cmd_reconcile)
