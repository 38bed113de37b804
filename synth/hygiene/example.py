"""One training example on its way through hygiene: a pair, its accepted diff, and the rendered texts."""

from __future__ import annotations

from dataclasses import dataclass, replace

from synth.linediff import parse
from synth.schema import Prompt, one_line, render_prompt, render_response


@dataclass(frozen=True)
class Example:
    """A (code, diagnostic) pair with an accepted diff; `line` is 1-based."""

    pair_id: str
    source: str        # user | lm
    model: str
    repl_id: str
    us: int            # the pair's instant, µs since the epoch (orders examples: earliest first)
    path: str
    rule: str          # pyright[...] / ruff[...]
    message: str
    line: int
    code: str          # the file at the pair's instant
    diff: str          # numbered line diff (DESIGN.md)
    fixed: str         # code with the diff applied

    def prompt(self) -> str:
        """The prompt text of DESIGN.md (SchemaError when the pair cannot be shown as one)."""
        return render_prompt(Prompt(self.path, self.code, self.rule, self.message, self.line))

    def response(self) -> str:
        """The `<diff>` response text."""
        return render_response(self.diff)

    def with_texts(self, **changes) -> Example:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def target_text(ex: Example) -> str:
    """The example without line numbers: code, rule, message, then the diff as signed lines.

    Dedup and decontamination read this, so that inserting a line near the top
    (which renumbers every later line) does not make two examples look different.
    """
    ops = "\n".join(op.sign + op.text for op in parse(ex.diff).ops)
    return f"{ex.code}\n{ex.rule} {one_line(ex.message)}\n{ops}"
