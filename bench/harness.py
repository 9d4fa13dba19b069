"""Figures, baselines and the table + JSON line every benchmark prints."""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def use_service_event_loop() -> None:
    """Run the in-process benches, ours and their baselines alike, on the event loop the services run on: uvicorn
    picks uvloop when it is installed (it is a dependency), so a pipeline measured on the default loop would not
    be the one deployed."""
    import asyncio

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; without it the services use this loop too
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    target: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    met: bool | None = None  # the target judged on this run; None where there is no target or the size is not the target's

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0) or math.isnan(self.value):
            return None
        assert self.baseline_value is not None
        return self.value / self.baseline_value


@dataclass(frozen=True)
class Skipped:
    """A figure this run could not measure, and why: printed as a gap, never as a number."""

    name: str
    reason: str


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "min_ms": min(ms),
        "max_ms": max(ms),
    }


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.1f}"


def render(figures: Sequence[Figure], skipped: Sequence[Skipped] = ()) -> str:
    header = ["figure", "value", "unit", "baseline (same run)", "ratio", "target", "met"]
    rows = [
        [
            f.name,
            _number(f.value),
            f.unit,
            f"{f.baseline}: {_number(f.baseline_value)}" if f.baseline and f.baseline_value is not None else "-",
            f"{f.ratio:.2f}" if f.ratio is not None else "-",
            f.target or "-",
            "-" if f.met is None else ("yes" if f.met else "NO"),
        ]
        for f in figures
    ]
    rows += [[s.name, "not measured", "-", s.reason, "-", "-", "-"] for s in skipped]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), line.format(*("-" * w for w in widths)), *(line.format(*r) for r in rows)]
    return "\n".join(line.rstrip() for line in out)


def _finite(value: Any) -> Any:
    """NaN is not JSON: a figure that could not be computed is written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def json_line(figures: Sequence[Figure], skipped: Sequence[Skipped] = (), context: dict[str, Any] | None = None) -> str:
    document: dict[str, Any] = {"bench": [_finite(asdict(f) | {"ratio": f.ratio}) for f in figures]}
    document["skipped"] = [asdict(s) for s in skipped]
    if context:
        document["context"] = context
    return json.dumps(document, sort_keys=True)


def write_json(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(line + "\n")
