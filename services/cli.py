"""`blacklist-sync`: the one command line of CONTRACT section 8."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence

import httpx

from bench.cli import register as register_bench
from services.kit.settings import DEFAULT_TOKENS, Settings
from services.ops.cli import register as register_ops
from services.topology import SERVICES


def _fail(message: str) -> int:
    print(f"blacklist-sync: {message}", file=sys.stderr)
    return 1


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number >= 1, not {text!r}")
    return int(text)


def cmd_up(_: argparse.Namespace) -> int:
    from services import localinfra

    stack = localinfra.up()
    print(f"\nKafka bootstrap:   {stack.bootstrap_servers}")
    print(f"Database URL:      {stack.database_url}")
    print(f"Keyring:           {stack.keyring_path}")
    print(f"Environment file:  {stack.home / 'env'}  (source it: set -a; . {stack.home / 'env'}; set +a)")
    tokens = json.loads(os.environ["PUBLISHER_TOKENS"]) if os.environ.get("PUBLISHER_TOKENS") else DEFAULT_TOKENS
    print("Publisher tokens:  " + ", ".join(f"{k}={v}" for k, v in tokens.items()))
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    from services import localinfra

    localinfra.down()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from services import runner

    names = list(SERVICES) if args.services == ["all"] else args.services
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        return _fail(f"unknown service {', '.join(unknown)}; choose from {', '.join(SERVICES)} or all")
    settings = Settings.from_env()
    if len(names) == 1 and not args.port_offset:
        import uvicorn

        from services.kit.serve import run_workers

        spec = SERVICES[names[0]]
        if args.workers > 1:
            options = {"access_log": False, "timeout_graceful_shutdown": 10}
            return run_workers(spec.app, args.host, spec.port, args.workers, options)
        uvicorn.run(spec.app, host=args.host, port=spec.port, access_log=False)
        return 0
    ports = {n: SERVICES[n].port + args.port_offset for n in names}
    running = runner.start(names, settings.home / "logs", ports=ports, workers=args.workers)
    # Blocked (after the children start, who must keep SIGTERM) so that sigwait receives SIGINT/SIGTERM and
    # stops the children, instead of the default action ending this process and orphaning them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    print(f"started {', '.join(f'{r.spec.name}:{r.port}' for r in running)}; logs in {settings.home / 'logs'}; Ctrl-C stops them")
    try:
        runner.wait_ready(running)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop(running)
    return 0


def cmd_demo(_: argparse.Namespace) -> int:
    from services.demo import run_demo

    return run_demo()


def cmd_sign(args: argparse.Namespace) -> int:
    """Sign one event value from stdin as a batch of one; print kcat-ready headers."""
    from schemas.events import ListingEvent
    from services.kit.signing import SigningKey, sign_batch

    settings = Settings.from_env()
    value = sys.stdin.buffer.read().rstrip(b"\n")
    try:
        event = ListingEvent.model_validate_json(value)
    except ValueError as exc:
        return _fail(f"stdin is not a valid event value: {exc}".splitlines()[0])
    key = SigningKey.load(settings.keys_dir, args.key_id)
    headers = sign_batch(key, event.listing.authority, [value])[0]
    print("content-type=application/json")
    print(f"event-type={event.event_type.value}")
    for name, text in headers.items():
        print(f"{name}={text}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    spec = SERVICES.get(args.consumer)
    if spec is None or spec.kind != "consumer":
        return _fail(f"{args.consumer} is not a consumer; choose airline, ticketing, luxury-retail or admissions")
    body: dict[str, object] = {"subject": {"kind": args.kind, "id": args.id}, "action": args.action}
    for name in ("seat_class", "region", "at"):
        if getattr(args, name):
            body[name] = getattr(args, name)
    url = args.url or spec.url
    try:
        response = httpx.post(f"{url}/v1/checks", json=body, timeout=10)
    except httpx.HTTPError as exc:
        return _fail(f"{args.consumer} at {url} did not answer ({exc}); start it with `blacklist-sync run {args.consumer}`")
    print(json.dumps(response.json(), indent=2, ensure_ascii=False))
    return 0 if response.status_code == 200 else _fail(f"check answered {response.status_code}")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="blacklist-sync", description="Blacklist Sync: authorities → Kafka → merchants' copies")
    sub = root.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start local Kafka and PostgreSQL, create topics, migrate, write keys").set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    run = sub.add_parser("run", help="run services (or `all`)")
    run.add_argument("services", nargs="+")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port-offset", type=int, default=0, help="add to every service's port (second instance)")
    run.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="processes per service sharing its port, a socket each; a consumer's workers split its partitions (one per core)",
    )
    run.set_defaults(func=cmd_run)
    sub.add_parser("demo", help="the main job end to end on local infrastructure").set_defaults(func=cmd_demo)
    sign = sub.add_parser("sign", help="sign one event value on stdin; print its headers for kcat -H")
    sign.add_argument("--key-id", required=True)
    sign.set_defaults(func=cmd_sign)
    check = sub.add_parser("check", help="ask a consumer's check API")
    check.add_argument("consumer")
    check.add_argument("--kind", choices=["person", "organization"], required=True)
    check.add_argument("--id", required=True)
    check.add_argument("--action", required=True)
    check.add_argument("--seat-class", dest="seat_class")
    check.add_argument("--region")
    check.add_argument("--at")
    check.add_argument("--url", help="consumer base URL (default http://127.0.0.1:<its port>)")
    check.set_defaults(func=cmd_check)
    register_bench(sub)
    register_ops(sub)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (FileNotFoundError, RuntimeError, TimeoutError, ValueError, OSError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return code


if __name__ == "__main__":
    sys.exit(main())
