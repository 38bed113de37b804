"""A file being written toward its plan: blocks delivered with mistakes, and mistakes fixed later."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .editor import FileEditor
from .mistakes import Mistake, plan_mistakes
from .plan import MIN_BLOCK_CHARS, FilePlan
from .typist import Typist

GHOST_MAX_CHARS = 900  # a completion longer than this would be a paste
# how often each kind of mistake is made, when a line allows several
KIND_WEIGHTS = {
    "undefined_name": 4,
    "wrong_attribute": 3,
    "missing_colon": 2,
    "unclosed_bracket": 2,
    "bad_indent": 1,
    "type_misuse": 3,
    "missing_import": 1,
}


@dataclass
class Pending:
    """A mistake now in the file, at line `offset` of block `block` of its plan."""

    work: FileWork
    block: int
    offset: int
    mistake: Mistake


class FileWork:
    """One file of a repl together with what its user means it to become."""

    def __init__(
        self, ed: FileEditor, text: str, rng: random.Random, min_block_chars: int = MIN_BLOCK_CHARS
    ) -> None:
        self.ed = ed
        self.rng = rng
        self.plan = FilePlan(text, min_block_chars)
        self.mistakes = plan_mistakes(text, rng) if ed.is_python else {}

    def deliver(
        self,
        block: int,
        typist: Typist,
        typed_lines: int,
        rest: str = "paste",
        mistake_rate: float = 0.0,
    ) -> list[Pending]:
        """Writes block `block` at its place: the first `typed_lines` lines typed (with mistakes at
        `mistake_rate`), the rest pasted or completed by `rest` ("paste" or "ghost").

        Returns the mistakes left in the file.
        """
        plan, rng, ed = self.plan, self.rng, self.ed
        lines = plan.blocks[block]
        first = plan.first_line[block]
        typed, pending = [], []
        for k, line in enumerate(lines[:typed_lines]):
            options = self.mistakes.get(first + k)
            if options and rng.random() < mistake_rate:
                mistake = self._choose(options)
                pending.append(Pending(self, block, k, mistake))
                if mistake.wrong is None:
                    continue
                line = mistake.wrong
            typed.append(line)
        start = plan.start_of(block)
        ed.goto(start, 0, log=start < ed.buf.line_count - 1 or rng.random() < 0.2)
        plan.delivered[block] = True
        plan.present[block] = len(typed) + len(lines) - min(typed_lines, len(lines))
        if typed and not typist.type(ed, "".join(line + "\n" for line in typed)):
            return pending
        remainder = "".join(line + "\n" for line in lines[typed_lines:])
        if remainder and typist.budget():
            if rest == "ghost" and 1 < len(remainder) <= GHOST_MAX_CHARS:
                typist.ghostwrite(ed, remainder)
            else:
                typist.paste(ed, remainder)
        return pending

    def _choose(self, options: list[Mistake]) -> Mistake:
        weights = [KIND_WEIGHTS[m.kind] for m in options]
        return self.rng.choices(options, weights)[0]

    def break_line(self, typist: Typist) -> Pending | None:
        """Edits a written line and gets it wrong (a typed-over name, a lost colon...)."""
        plan, rng, buf = self.plan, self.rng, self.ed.buf
        lines = [
            (block, k)
            for block, count in enumerate(plan.present)
            if count == len(plan.blocks[block])
            for k in range(count)
            if plan.first_line[block] + k in self.mistakes
        ]
        if not lines:
            return None
        block, k = rng.choice(lines)
        line = plan.start_of(block) + k
        options = [m for m in self.mistakes[plan.first_line[block] + k] if m.wrong is not None]
        if not options or buf.line(line) != plan.blocks[block][k]:
            return None
        mistake = self._choose(options)
        column, old, new = smallest_difference(mistake.right, mistake.wrong)
        typist.replace_span(self.ed, line, column, old, new, select=0.0)
        return Pending(self, block, k, mistake)

    def fix(self, pending: Pending, typist: Typist) -> bool:
        """Goes back to a mistake and corrects it; False when it can no longer be found."""
        plan, buf = self.plan, self.ed.buf
        mistake = pending.mistake
        near = plan.start_of(pending.block) + pending.offset
        if mistake.wrong is None:
            lines = plan.blocks[pending.block]
            at = plan.start_of(pending.block)
            if pending.offset > 0:
                previous = buf.find_line(lines[pending.offset - 1], near - 1)
                if previous is None:
                    return False
                at = previous + 1
            typist.short_pause()
            self.ed.goto(at, 0, log=True)
            plan.present[pending.block] += 1
            return typist.type(self.ed, mistake.right + "\n")
        line = buf.find_line(mistake.wrong, near)
        if line is None:
            return False
        column, old, new = smallest_difference(mistake.wrong, mistake.right)
        return typist.replace_span(self.ed, line, column, old, new)


def smallest_difference(wrong: str, right: str) -> tuple[int, str, str]:
    """(offset, old, new): the smallest span that turns `wrong` into `right`, what a person would retype."""
    limit = min(len(wrong), len(right))
    start = 0
    while start < limit and wrong[start] == right[start]:
        start += 1
    end = 0
    while end < limit - start and wrong[-1 - end] == right[-1 - end]:
        end += 1
    return start, wrong[start : len(wrong) - end], right[start : len(right) - end]
