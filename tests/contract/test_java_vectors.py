"""A JDK-only Java program (docs/examples/java/VerifyVectors.java) agrees with every committed signing vector."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
SOURCE = ROOT / "docs" / "examples" / "java" / "VerifyVectors.java"
VECTORS_TEXT = ROOT / "schemas" / "vectors" / "signing-v1.txt"
VECTORS: dict[str, Any] = json.loads((ROOT / "schemas" / "vectors" / "signing-v1.json").read_text(encoding="utf-8"))
JAVA_TIMEOUT = 120  # javac alone takes a few seconds on a loaded two-core machine

pytestmark = [
    pytest.mark.skipif(
        shutil.which("javac") is None, reason="javac (a JDK 17+) is not installed: install openjdk-17-jdk-headless"
    ),
    pytest.mark.timeout(2 * JAVA_TIMEOUT + 30),
]


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("java")
    subprocess.run(["javac", "-Xlint:all", "-Werror", "-d", str(out), str(SOURCE)], check=True, timeout=JAVA_TIMEOUT)
    return out


def verify(classes: Path, vectors: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["java", "-cp", str(classes), "VerifyVectors", str(vectors)], capture_output=True, text=True, timeout=JAVA_TIMEOUT
    )


def test_java_verifies_every_vector_record_and_refuses_every_negative_case(classes: Path) -> None:
    done = verify(classes, VECTORS_TEXT)

    assert done.returncode == 0, done.stdout + done.stderr
    records = sum(len(b["records"]) for b in VECTORS["batches"])
    assert f"OK: {records} records in {len(VECTORS['batches'])} batches verified" in done.stdout
    assert f"{len(VECTORS['negative'])} negative cases refused with the expected reason" in done.stdout
    assert f"{len(VECTORS['subject_hashes'])} subject hashes reproduced" in done.stdout


def altered(tmp_path: Path, old: str, new: str) -> Path:
    text = VECTORS_TEXT.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "altered.txt"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_java_fails_on_a_record_whose_signature_was_altered(classes: Path, tmp_path: Path) -> None:
    record = VECTORS["batches"][-1]["records"][-1]
    signature = record["headers"]["x-signature"]
    line = next(s for s in VECTORS_TEXT.read_text(encoding="utf-8").splitlines() if f"value={record['value_base64']}" in s)
    forged = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]

    done = verify(classes, altered(tmp_path, line, line.replace(signature, forged)))

    assert done.returncode == 1
    assert f"{VECTORS['batches'][-1]['name']}/{record['index']}: refused with bad_signature" in done.stdout


def test_java_fails_when_a_negative_case_would_be_accepted(classes: Path, tmp_path: Path) -> None:
    case = VECTORS["negative"][0]
    genuine = VECTORS["batches"]
    source = next(b for b in genuine if b["name"] == case["made_from"]["batch"])["records"][case["made_from"]["index"]]

    # The negative case's line now carries the genuine value: Java must notice it is no longer refused.
    done = verify(classes, altered(tmp_path, f"value={case['value_base64']}", f"value={source['value_base64']}"))

    assert done.returncode == 1
    assert f"negative {case['name']}: expected {case['expected_reason']}, got ok" in done.stdout
