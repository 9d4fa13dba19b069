"""`blacklist-sync demo`: local infrastructure, every service, the scenario, then each copy and the answers."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

import asyncpg

from schemas.catalogue import CONSUMERS, schema_name
from services import localinfra, runner
from services.scenario import Outcome, Scenario
from services.topology import SERVICES


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, r)) for r in rows]
    return "\n".join(out)


async def copies_text(database_url: str, listing_ids: set[str]) -> str:
    """What each consumer's copy holds for the scenario's listings: masked ids, codes and terms, or a marker."""
    conn = await asyncpg.connect(database_url)
    parts = []
    try:
        for consumer in CONSUMERS:
            rows = await conn.fetch(
                "SELECT listing_id, version, list, id_masked, restrictions, scope, expires_at"
                f' FROM "{schema_name(consumer)}".listings'
                " WHERE listing_id = ANY($1::text[]) ORDER BY listing_id",
                sorted(listing_ids),
            )
            body = [
                [
                    r["listing_id"],
                    r["version"],
                    r["list"] or "-",
                    r["id_masked"] or "(version marker)",
                    ",".join(r["restrictions"] or []) or "-",
                    r["scope"] or "-",
                    r["expires_at"].date().isoformat() if r["expires_at"] else "-",
                ]
                for r in rows
            ]
            parts.append(
                f"\n{consumer} copy ({len(rows)} rows):\n"
                + (table(body, ["listing", "v", "list", "subject", "restrictions", "scope", "expires"]) if body else "  (empty)")
            )
    finally:
        await conn.close()
    return "\n".join(parts)


def answers_text(outcome: Outcome) -> str:
    rows = [
        [
            a.phase,
            a.question.consumer,
            a.question.label,
            "allowed" if a.allowed else "REFUSED",
            "ok" if a.ok else f"WRONG (expected {'allowed' if a.question.expect_allowed else 'refused'})",
            ",".join(a.blocking_lists) or "-",
        ]
        for a in outcome.answers
    ]
    return table(rows, ["phase", "consumer", "question", "answer", "check", "blocking lists"])


def run_demo(progress: Callable[[str], None] = print) -> int:
    started = time.monotonic()
    progress("Starting local Kafka and PostgreSQL (blacklist-sync up)…")
    was_running = localinfra.is_running()
    stack = localinfra.up(progress=progress)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
        "DATABASE_URL": stack.database_url,
        "AUTHORITY_KEYRING": str(stack.keyring_path),
        "BLACKLIST_SYNC_HOME": str(stack.home),
    }
    progress("Starting the services…")
    running = runner.start(SERVICES, stack.home / "logs", env=env)
    try:
        runner.wait_ready(running, progress=progress)
        scenario = Scenario({name: spec.url for name, spec in SERVICES.items()}, progress=progress)
        outcome = asyncio.run(scenario.run())
        print(asyncio.run(copies_text(stack.database_url, {x["listing_id"] for x in outcome.listings.values()})))
        print("\nRefused at the source:\n  " + "\n  ".join(outcome.refusals))
        print("\nCheck questions and answers:\n" + answers_text(outcome))
    finally:
        progress("Stopping the services…")
        runner.stop(running)
        if not was_running:
            localinfra.down(progress=progress)
    wrong = sum(not a.ok for a in outcome.answers)
    right = len(outcome.answers) - wrong
    progress(f"\nDemo finished in {time.monotonic() - started:.1f}s: {right}/{len(outcome.answers)} answers as expected.")
    if wrong:
        progress(f"{wrong} answers were wrong: see the table above and the service logs in {stack.home / 'logs'}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
