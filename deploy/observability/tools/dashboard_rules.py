"""Check the Grafana dashboard's structure and turn each panel query into a recording rule, so promtool parses it."""

# Grafana variables are not PromQL: they are replaced by values of the same shape before promtool sees the query.

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$consumer": ".*"}
UNKNOWN_VARIABLE = re.compile(r"\$\{?[A-Za-z_]\w*")


def concrete(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def problems(dashboard: dict[str, Any]) -> list[str]:
    found: list[str] = []
    ids = [p.get("id") for p in panels(dashboard)]
    if len(ids) != len(set(ids)):
        found.append(f"panel ids repeat: {ids}")
    variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    for panel in panels(dashboard):
        if panel.get("type") == "row":
            continue
        title = panel.get("title", f"panel {panel.get('id')}")
        if not panel.get("targets"):
            found.append(f"{title}: no query")
        if "gridPos" not in panel:
            found.append(f"{title}: no gridPos")
        uid = panel.get("datasource", {}).get("uid", "")
        if uid.startswith("${") and uid[2:-1] not in variables:
            found.append(f"{title}: datasource variable {uid} is not defined")
        for target in panel.get("targets", []):
            leftover = UNKNOWN_VARIABLE.findall(concrete(target.get("expr", "")))
            if leftover:
                found.append(f"{title}: query uses undefined variables {leftover}")
    return found


def recording_rules(dashboard: dict[str, Any]) -> str:
    rules = [
        {"record": f"dashboard:panel_{panel['id']}:{target['refId'].lower()}", "expr": concrete(target["expr"])}
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]
    # JSON is valid YAML: promtool reads this file as a rules file.
    return json.dumps({"groups": [{"name": "dashboard-queries", "rules": rules}]}, indent=2)


def main() -> int:
    dashboard_path, rules_path = Path(sys.argv[1]), Path(sys.argv[2])
    dashboard = json.loads(dashboard_path.read_text())
    found = problems(dashboard)
    for problem in found:
        print(f"dashboard: {problem}")
    rules_path.write_text(recording_rules(dashboard))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
