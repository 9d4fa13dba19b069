"""HTTP load with `wrk` (Debian package `wrk`): run it, read its summary and latency distribution.

One wrk thread and ten connections for every HTTP figure. The box has two cores shared by wrk, the service
(one single-threaded uvicorn event loop), PostgreSQL and Kafka: one wrk thread already outruns one Python
loop many times over, and a second would only take CPU from the server it measures. Ten connections match
the services' database pool (max_size=10): more would only queue inside the server and raise latency
without adding throughput. wrk is closed-loop (each connection waits for its answer), so the percentiles
are those of the rate actually reached."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

THREADS = 1
CONNECTIONS = 10
INSTALL_HINT = "install wrk: apt-get install -y wrk"
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rate: float
    latency_ms: dict[str, float]  # "50", "75", "90", "99" -> ms
    non_2xx: int
    socket_errors: int
    connections: int = CONNECTIONS

    @property
    def ok_rate(self) -> float:
        """Only the 2xx answers, per second: a refused request is not a listing accepted."""
        return (self.requests - self.non_2xx) / self.seconds if self.seconds > 0 else float("nan")

    @property
    def p99_ms(self) -> float:
        return self.latency_ms.get("99", float("nan"))

    def notes(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "p50_ms": self.latency_ms.get("50"),
            "p90_ms": self.latency_ms.get("90"),
            "p99_ms": self.latency_ms.get("99"),
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "threads": THREADS,
            "connections": self.connections,
        }


def available() -> bool:
    return shutil.which("wrk") is not None


def _ms(number: str, unit: str) -> float:
    return float(number) * _UNITS_MS[unit]


def parse(output: str) -> WrkResult:
    """The figures of wrk's summary (run with --latency); a summary without them is an error, not a zero."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if done is None or rate is None:
        raise RuntimeError(f"wrk printed no summary: {output.strip()[-300:]!r}")
    latency = {m[0]: _ms(m[1], m[2]) for m in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        requests=int(done[1]),
        seconds=_ms(done[2], done[3]) / 1000,
        rate=float(rate[1]),
        latency_ms=latency,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


async def run(
    url: str, seconds: float, script: str | None = None, script_args: Sequence[str] = (), connections: int = CONNECTIONS
) -> WrkResult:
    """wrk against `url` for `seconds` (whole seconds, at least 1), optionally driven by a Lua script."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        command = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s"]
        if script is not None:
            path = Path(folder) / "load.lua"
            path.write_text(script)
            command += ["-s", str(path)]
        command += [url, *(["--", *script_args] if script_args else [])]
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout=seconds + 60)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise TimeoutError(f"wrk against {url} did not finish within {seconds + 60:.0f}s") from None
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited {process.returncode}: {output.decode(errors='replace').strip()[-300:]}")
    return dataclasses.replace(parse(output.decode(errors="replace")), connections=connections)
