"""Write a replayed file tree to a folder."""

from __future__ import annotations

from pathlib import Path

from events.errors import OtlakeError


def write_tree(files: dict[str, str | None], out: Path) -> tuple[int, list[str]]:
    """Write {path: content} under out; returns (files written, paths with unknown content)."""
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise OtlakeError(f"{out} is not empty; give an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    written, unknown = 0, []
    for path, text in files.items():
        if text is None:
            unknown.append(path)
            continue
        target = (out / path).resolve()
        if not target.is_relative_to(out):  # paths were checked at ingest; never write outside out
            raise OtlakeError(f"{path!r} would be written outside {out}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="")
        written += 1
    return written, unknown
