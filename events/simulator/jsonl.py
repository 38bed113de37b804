"""Writing events as JSON lines."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable


def write_jsonl(events: Iterable[dict], path: pathlib.Path | str) -> None:
    """Writes one compact JSON object per line, UTF-8, non-ASCII kept as is."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for event in events:
            out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
