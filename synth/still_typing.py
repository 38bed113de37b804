"""The `still_typing` pair filter: a diagnostic on a line the user was in the middle of typing.

`im` flagged as an undefined name, one keystroke burst before it became
`import os`, is no repair example: nothing was wrong, the line was not
finished. A diagnostic is `still_typing` when its line changed in the last
burst of typing before the diagnostic, the last packet of that burst left
the cursor on it, and, in the next burst, it grew into a longer line that
starts with it (trailing spaces aside; a line of only indentation that then
gets code counts too). A line typed earlier and extended later, after other
work (a missing `:` added in a later fix), is not: the next burst is where
typing on happens. Nor is a line of a paste the cursor did not end on.
"""

from __future__ import annotations

from .linediff import split_lines
from .usermine import PAUSE_US, line_opcodes


def burst_versions(times_us: list[int], index: int, pause_us: int = PAUSE_US) -> tuple[int, int | None]:
    """For the packet at `index`: the index of the first packet of its burst, and of the last packet
    of the next burst (None when nothing follows)."""
    start = index
    while start > 0 and times_us[start] - times_us[start - 1] < pause_us:
        start -= 1
    if index + 1 >= len(times_us):
        return start, None
    end = index + 1
    while end + 1 < len(times_us) and times_us[end + 1] - times_us[end] < pause_us:
        end += 1
    return start, end


def _changed_new_lines(old: str, new: str) -> set[int]:
    return {j for tag, _, _, j1, j2 in line_opcodes(split_lines(old), split_lines(new)) if tag != "equal"
            for j in range(j1, j2)}


def still_typing(line: int, burst_start: str, text: str, next_text: str | None,
                 cursor_line: int | None = None) -> bool:
    """Whether 0-based `line` of `text` was being typed: changed since `burst_start`, the cursor left on
    it (`cursor_line`, when known), and extended in `next_text` (the file at the end of the next burst)."""
    lines = split_lines(text)
    if next_text is None or line >= len(lines) or line not in _changed_new_lines(burst_start, text):
        return False
    if cursor_line is not None and cursor_line != line:
        return False
    typed = lines[line].rstrip()
    later = split_lines(next_text)
    for tag, i1, i2, j1, j2 in line_opcodes(lines, later):
        if tag == "replace" and i1 <= line < i2:
            return any(len(grown.rstrip()) > len(typed) and grown.startswith(typed) for grown in later[j1:j2])
    return False
