"""Run the deploy/ validation scripts (offline after their first run) on the repository's files or on broken copies."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The first run installs kubeconform, the Kubernetes schemas and promtool into the tools cache.
FIRST_RUN_TIMEOUT_S = 280


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deploy: validates deploy/ (k8s manifests, alert rules, dashboard) with real tools")


@dataclass(frozen=True)
class Outcome:
    returncode: int
    output: str


def run_validator(script: Path, directory: Path | None = None) -> Outcome:
    args = ["bash", str(script), *([str(directory)] if directory else [])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=FIRST_RUN_TIMEOUT_S, cwd=ROOT)
    return Outcome(done.returncode, done.stdout + done.stderr)


def broken_copy(source: Path, target: Path) -> Callable[[str, str, str], None]:
    """Copy a deploy/ folder; the returned function replaces text in one file of the copy (which must contain it)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("schemas", "tools", "*.sh", "*.md"))

    def replace(relative: str, old: str, new: str) -> None:
        path = target / relative
        text = path.read_text()
        assert old in text, f"{relative} no longer contains {old!r}: update the test's mutation"
        path.write_text(text.replace(old, new, 1))

    return replace
