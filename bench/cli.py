"""`blacklist-sync bench`: start what the benchmarks need, run them, print a table and a JSON line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench.harness import Figure, json_line, progress, render

SIZES = {"tiny": {"consumer": 2_000, "propagation": 3}, "full": {"consumer": 200_000, "propagation": 20}}


def run(args: argparse.Namespace) -> int:
    from bench import consumer, propagation
    from services import localinfra, runner
    from services.kit.settings import Settings
    from services.topology import SERVICES

    size = SIZES[args.size]
    stack = localinfra.up(progress=progress)
    settings = Settings.from_env()
    figures: list[Figure] = []
    only = set(args.only or ["consumer", "propagation"])
    if "consumer" in only:
        figures += asyncio.run(consumer.run(settings, size["consumer"]))
    if "propagation" in only:
        env = {"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers, "DATABASE_URL": stack.database_url}
        running = runner.start(["court", "airline"], stack.home / "logs" / "bench", env=env)
        try:
            runner.wait_ready(running, progress=progress)
            figures += propagation.figures(SERVICES["court"].url, SERVICES["airline"].url, size["propagation"])
        finally:
            runner.stop(running)
    print(render(figures))
    print(json_line(figures))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = sub.add_parser("bench", help="benchmarks with same-run baselines (table + JSON line)")
    bench.add_argument("--size", choices=sorted(SIZES), default="full")
    bench.add_argument("--only", action="append", choices=["consumer", "propagation"], help="run only these (repeatable)")
    bench.set_defaults(func=run)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *sys.argv[1:]])
    sys.exit(args.func(args))
