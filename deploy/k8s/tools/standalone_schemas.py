"""Turn the Kubernetes JSON schemas shipped in the kubernetes-validate wheel into standalone files for kubeconform."""

# kubernetes-validate keeps one shared _definitions.json that every kind refers to as "/api/_definitions.json";
# kubeconform cannot follow that reference offline, so each kind gets the definitions it reaches copied inside it.

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate

SHARED_REF = "/api/_definitions.json#/$defs/"
LOCAL_REF = "#/$defs/"


def references(node: Any) -> set[str]:
    """Names of the definitions a schema node refers to (directly)."""
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith((SHARED_REF, LOCAL_REF)):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            found |= references(value)
    elif isinstance(node, list):
        for value in node:
            found |= references(value)
    return found


def reachable(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Every definition the schema reaches, transitively."""
    todo, seen = list(references(schema)), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        todo.extend(references(definitions[name]))
    return {name: definitions[name] for name in sorted(seen)}


def standalone(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(schema).replace(SHARED_REF, LOCAL_REF)
    result: dict[str, Any] = json.loads(text)
    own = {name: json.loads(json.dumps(d).replace(SHARED_REF, LOCAL_REF)) for name, d in reachable(schema, definitions).items()}
    result["$defs"] = own
    return result


def convert(version: str, out: Path) -> int:
    """Write standalone strict and non-strict schemas of every kind of one Kubernetes version; return the count."""
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    written = 0
    for flavour in ("", "-strict"):
        source = base / f"v{version}-local{flavour}"
        if not source.is_dir():
            raise SystemExit(f"kubernetes-validate has no schemas for Kubernetes {version} ({source})")
        target = out / f"v{version}-standalone{flavour}"
        target.mkdir(parents=True, exist_ok=True)
        definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
        for path in sorted(source.glob("*.json")):
            if path.name in ("_definitions.json", "all.json"):
                continue
            schema = json.loads(path.read_text())
            (target / path.name).write_text(json.dumps(standalone(schema, definitions)))
            written += 1
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="kubeconform -schema-location root")
    parser.add_argument("versions", nargs="+", help="Kubernetes versions, e.g. 1.31.0 1.37.0")
    args = parser.parse_args()
    for version in args.versions:
        print(f"kubernetes {version}: {convert(version, args.out)} standalone schemas in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
