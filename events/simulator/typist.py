"""How a person gets text into a file: keystroke bursts with typos and pauses, pastes, completions."""

from __future__ import annotations

import random
from collections.abc import Callable

from .clock import Clock
from .editor import FileEditor

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {
    key: row[max(0, i - 1) : i] + row[i + 1 : i + 2] for row in _ROWS for i, key in enumerate(row)
}
# characters per packet: mostly one keystroke, sometimes a few batched by the client
_CHUNK_SIZES = (1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 4)


class Typist:
    """One user's hands: turns intended text into OT packets with human timing."""

    def __init__(
        self,
        rng: random.Random,
        clock: Clock,
        typo_rate: float = 0.015,
        on_pause: Callable[[FileEditor], None] | None = None,
        budget: Callable[[], bool] | None = None,
    ) -> None:
        self.rng = rng
        self.clock = clock
        self.typo_rate = typo_rate
        self.on_pause = on_pause  # called at the end of each typing burst
        self.budget = budget or (lambda: True)  # False once no more packets may be sent
        self._burst = 0

    def keystroke_gap(self) -> None:
        """The time between two keystrokes."""
        self.clock.wait_ms(self.rng.lognormvariate(4.6, 0.45))  # median ~100 ms

    def short_pause(self) -> None:
        """A pause between bursts: reading, thinking."""
        rng = self.rng
        self.clock.wait_s(rng.uniform(1.0, 8.0) if rng.random() < 0.85 else rng.uniform(10, 90))

    def _end_burst_maybe(self, ed: FileEditor) -> None:
        self._burst -= 1
        if self._burst > 0:
            return
        self._burst = self.rng.randint(4, 40)
        self.short_pause()
        if self.on_pause is not None:
            self.on_pause(ed)

    def type(self, ed: FileEditor, text: str) -> bool:
        """Types `text` at the cursor; returns False when the packet budget ran out first."""
        rng = self.rng
        i, n = 0, len(text)
        while i < n:
            if not self.budget():
                return False
            char = text[i]
            if char == "\n":
                # the editor auto-indents: Enter inserts the newline and the next line's indent
                j = i + 1
                while j < n and text[j] == " ":
                    j += 1
            else:
                j = min(n, i + rng.choice(_CHUNK_SIZES))
                newline = text.find("\n", i, j)
                if newline != -1:
                    j = newline
                if char in _NEIGHBOURS and rng.random() < self.typo_rate:
                    self._typo(ed, text, i)
                    if not self.budget():
                        return False
                    j = i + 1
            ed.packet(text[i:j])
            self.keystroke_gap()
            self._end_burst_maybe(ed)
            i = j
        return True

    def _typo(self, ed: FileEditor, text: str, i: int) -> None:
        # hit a neighbouring key, maybe type on a little, notice, and backspace over it
        rng = self.rng
        ed.packet(rng.choice(_NEIGHBOURS[text[i]]))
        self.keystroke_gap()
        more = text[i + 1 : i + 1 + rng.choice((0, 0, 1, 2, 3))].split("\n")[0]
        for char in more:
            if not self.budget():
                return
            ed.packet(char)
            self.keystroke_gap()
        self.clock.wait_ms(rng.uniform(150, 700))
        wrong = 1 + len(more)
        if rng.random() < 0.5:
            for _ in range(wrong):
                if not self.budget():
                    return
                ed.packet(back=1)
                self.clock.wait_ms(rng.uniform(40, 120))
        elif self.budget():
            ed.packet(back=wrong)  # ctrl+backspace over the word
            self.keystroke_gap()

    def erase(self, ed: FileEditor, count: int) -> bool:
        """Holds backspace over `count` code points before the cursor."""
        while count > 0:
            if not self.budget():
                return False
            step = 1 if self.rng.random() < 0.8 else min(count, self.rng.randint(2, 8))
            ed.packet(back=step)
            count -= step
            self.clock.wait_ms(self.rng.uniform(30, 90))
        return True

    def paste(self, ed: FileEditor, text: str) -> None:
        """Pastes `text` at the cursor in one packet."""
        self.clock.wait_s(self.rng.uniform(0.8, 6))
        ed.packet(text, whole=True)

    def ghostwrite(self, ed: FileEditor, text: str) -> bool:
        """Types the start of `text`, then accepts a completion that inserts the rest."""
        rng = self.rng
        cut = min(len(text) - 1, rng.randint(3, 24))
        if cut > 0 and not self.type(ed, text[:cut]):
            return False
        if not self.budget():
            return False
        self.clock.wait_ms(rng.uniform(300, 1500))
        rest = text[max(cut, 0) :]
        ed.packet(rest, author="GHOSTWRITER", whole=True)
        self.clock.wait_ms(rng.uniform(5, 60))
        ed.editor("completion_accept", {"length": len(rest), "source": "ghostwriter"})
        self.keystroke_gap()
        return True

    def replace_span(
        self, ed: FileEditor, line: int, column: int, old: str, new: str, select: float = 0.35
    ) -> bool:
        """Goes to `column` of `line` and replaces `old` (there) with `new`.

        At odds `select` the user selects `old` and types over it in one packet; else they
        backspace over it and type `new`.
        """
        rng = self.rng
        self.short_pause()
        ed.goto(line, column + len(old), log=rng.random() < 0.6)
        if old and rng.random() < select:
            # select the wrong text and type over it: one packet
            if not self.budget():
                return False
            if old:
                ed.editor(
                    "selection",
                    {
                        "start": {"line": line, "character": column},
                        "end": {"line": line, "character": column + len(old)},
                    },
                )
            ed.packet(new, back=len(old), whole=True)
            self.keystroke_gap()
            return True
        if old and not self.erase(ed, len(old)):
            return False
        return self.type(ed, new)

    def select_delete(self, ed: FileEditor, first: int, last: int) -> str:
        """Selects lines first..last-1 whole and deletes them; returns the deleted text."""
        ed.goto(first, 0)
        length = sum(len(ed.buf.line(i)) + 1 for i in range(first, last))
        ed.editor(
            "selection",
            {"start": {"line": first, "character": 0}, "end": {"line": last, "character": 0}},
        )
        self.clock.wait_ms(self.rng.uniform(200, 1200))
        text = "\n".join(ed.buf.line(i) for i in range(first, last)) + "\n"
        ed.packet(forward=length, whole=True)
        self.keystroke_gap()
        return text
