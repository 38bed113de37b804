"""Edits that do not grow a file: rewriting lines, retyping a word, debug prints added and removed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .typist import Typist
from .work import FileWork

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_DEBUG_WORDS = ("DEBUG", "here", "debug 🐛", "ici", "值", "ok?")


@dataclass
class DebugLine:
    """A print the user added to look at a value, and may remove later."""

    work: FileWork
    block: int
    text: str


def _delivered_line(work: FileWork) -> tuple[int, int, int] | None:
    # a random line of a delivered block: (block, first file line of the block, line in the file)
    plan, rng = work.plan, work.rng
    blocks = [i for i, count in enumerate(plan.present) if count > 0]
    if not blocks:
        return None
    block = rng.choice(blocks)
    start = plan.start_of(block)
    return block, start, start + rng.randrange(plan.present[block])


def rewrite_lines(work: FileWork, typist: Typist, most: int = 6) -> bool:
    """Selects up to `most` lines of a written block, deletes them and types them again."""
    picked = _delivered_line(work)
    if picked is None:
        return False
    block, start, line = picked
    end = min(start + work.plan.present[block], line + work.rng.randint(1, most))
    typist.short_pause()
    text = typist.select_delete(work.ed, line, end)
    return typist.type(work.ed, text)


def retype_word(work: FileWork, typist: Typist) -> bool:
    """Goes to a word in a written line, erases it and types it again."""
    picked = _delivered_line(work)
    if picked is None:
        return False
    line = picked[2]
    words = list(_WORD.finditer(work.ed.buf.line(line)))
    if not words:
        return False
    word = work.rng.choice(words)
    typist.short_pause()
    work.ed.goto(line, word.end(), log=work.rng.random() < 0.5)
    return typist.erase(work.ed, len(word.group())) and typist.type(work.ed, word.group())


def add_debug_print(work: FileWork, typist: Typist) -> DebugLine | None:
    """Adds `print(...)` after a statement of a written block; None when no safe place was found."""
    plan, rng, buf = work.plan, work.rng, work.ed.buf
    blocks = [i for i, count in enumerate(plan.present) if count == len(plan.blocks[i])]
    if not blocks:
        return None
    block = rng.choice(blocks)
    ends = [k for k in range(len(plan.blocks[block])) if plan.first_line[block] + k in plan.ends]
    if not ends:
        return None
    k = rng.choice(ends)
    line = plan.start_of(block) + k
    if buf.line(line) != plan.blocks[block][k]:
        return None  # the line is not what the plan says (a mistake sits there): leave it
    indent, name = plan.ends[plan.first_line[block] + k]
    value = name if name and rng.random() < 0.8 else repr(rng.choice(_DEBUG_WORDS))
    text = " " * indent + f'print("{rng.choice(_DEBUG_WORDS)}", {value})'
    typist.short_pause()
    work.ed.goto(line, len(buf.line(line)), log=True)
    plan.present[block] += 1
    # Enter auto-indents to the current line's indent; the user fixes the indent if it differs
    typist.type(work.ed, "\n" + text)
    return DebugLine(work, block, text)


def remove_debug_print(debug: DebugLine, typist: Typist) -> bool:
    """Deletes a debug print added earlier; False when it is gone or changed."""
    work = debug.work
    line = work.ed.buf.find_line(debug.text, work.plan.start_of(debug.block))
    if line is None:
        return False
    typist.short_pause()
    work.plan.present[debug.block] -= 1
    if work.rng.random() < 0.5:
        typist.select_delete(work.ed, line, line + 1)
        return True
    # or put the cursor at its end and hold backspace up to the end of the line above
    work.ed.goto(line, len(debug.text), log=True)
    return typist.erase(work.ed, len(debug.text) + 1)
