"""Figures, baselines and the table + JSON line every benchmark prints."""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    target: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        assert self.baseline_value is not None
        return self.value / self.baseline_value


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
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


def render(figures: list[Figure]) -> str:
    header = ["figure", "value", "unit", "baseline (same run)", "ratio", "target"]
    rows = [
        [
            f.name,
            f"{f.value:,.1f}",
            f.unit,
            f"{f.baseline}: {f.baseline_value:,.1f}" if f.baseline and f.baseline_value is not None else "-",
            f"{f.ratio:.2f}" if f.ratio is not None else "-",
            f.target or "-",
        ]
        for f in figures
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), line.format(*("-" * w for w in widths)), *(line.format(*r) for r in rows)]
    return "\n".join(out)


def json_line(figures: list[Figure]) -> str:
    return json.dumps({"bench": [asdict(f) | {"ratio": f.ratio} for f in figures]}, sort_keys=True)
