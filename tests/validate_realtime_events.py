"""Validates Realtime client events (one JSON object per line) against the GA models of the
`openai` package: the type must be a known client event, the fields must validate, and no
unknown top-level field may appear (the models allow extras, so that is checked here).

Usage: python validate_realtime_events.py EVENTS.jsonl
Exit status 0 when every event is valid; otherwise each failure is printed and the status is 1.
"""

import json
import sys
import typing

from openai.types.realtime import RealtimeClientEvent

MEMBERS = typing.get_args(typing.get_args(RealtimeClientEvent)[0])
BY_TYPE = {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in MEMBERS}


def check_nested(value, path, failures):
    """Reports extras on nested pydantic models too, where the models record them."""
    extra = getattr(value, "model_extra", None)
    if extra:
        failures.append(f"{path}: unexpected fields {sorted(extra)}")
    fields = getattr(type(value), "model_fields", None)
    if fields:
        for name in fields:
            check_nested(getattr(value, name), f"{path}.{name}", failures)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_nested(v, f"{path}[{i}]", failures)


def main(path):
    failures = []
    counts = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                raw = json.loads(line)
                model = BY_TYPE[raw["type"]]
                event = model.model_validate(raw)
                check_nested(event, raw["type"], failures)
                counts[raw["type"]] = counts.get(raw["type"], 0) + 1
            except Exception as e:  # report every failure, not just the first
                failures.append(f"line {n}: {e}: {line[:300]}")
    for t in sorted(counts):
        print(f"{counts[t]:6} {t}")
    for f in failures:
        print("INVALID", f)
    return 1 if failures or not counts else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
