"""One DebugBench repl played: the buggy solution typed into main.py, linted at pauses, run, then fixed.

The file is kept as segments (unchanged oracle lines, planted bugs, lines the
user added on the side), so every edit knows where its lines are now.
Fix styles:
  one_by_one  top to bottom, one bug at a time, a pause and a lint after each
  one_burst   every bug fixed in one burst of typing (no pause between fixes), then a lint
  scattered   bugs in a random order, with unrelated edits (a comment, a blank line) in between
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .clock import Clock
from .diagnostics import DiagnosticLog
from .editor import FileEditor
from .extras import owner_name, run_result
from .recorder import Recorder
from .typist import Typist
from .work import smallest_difference

if TYPE_CHECKING:
    from .debugbench import MultiBugFile

FIX_STYLES = ("one_by_one", "one_burst", "scattered")
PATH = "main.py"
DAY_US = 86_400_000_000
_COMMENTS = ("# TODO: edge cases", "# O(n) time, O(1) space", "# check this again", "# 思路: two pointers",
             "# ça marche?", "# see the editorial", "# base case first", "# fixme later 🐛")
_OPENERS = ("\\", ",", "(", "[", "{", ":")


@dataclass
class _Segment:
    current: list[str]           # its lines in the file now
    target: list[str]            # its lines in the oracle
    bug: int | None = None       # index of the planted bug it belongs to
    oracle_start: int | None = None  # oracle line of its first line (unchanged oracle lines only)
    safe: set[int] = field(default_factory=set)  # offsets before which a line may go (a statement starts)


class _Steady(Typist):
    """Hands that keep going: no pause between bursts (a fix typed in one go)."""

    def _end_burst_maybe(self, ed: FileEditor) -> None:
        return


def play_file(file: MultiBugFile, seed: int, index: int, diagnostics: DiagnosticLog) -> Recorder:
    """Plays one repl; its lint requests go to `diagnostics` (flushed by the caller); returns its Recorder."""
    repl = _Repl(file, seed, index, diagnostics)
    repl.play()
    return repl.rec


class _Repl:
    def __init__(self, file: MultiBugFile, seed: int, index: int, diagnostics: DiagnosticLog) -> None:
        rng = self.rng = random.Random(f"otlake-debugbench/{seed}/{index}/{file.repl_id}")
        self.file = file
        self.clock = Clock(rng.randrange(0, 14 * DAY_US))
        self.rec = Recorder(file.repl_id, rng.randint(10_000, 40_000_000), self.clock, rng)
        self.diagnostics = diagnostics
        self.typist = Typist(rng, self.clock, on_pause=self._on_pause)
        self.steady = _Steady(rng, self.clock)
        self.ed = FileEditor(PATH, self.rec, rng)
        self.segments = _segments(file)

    def play(self) -> None:
        rng, rec = self.rng, self.rec
        rec.emit("repl", language="python3", is_private=False, owner=owner_name(rng), title=self.file.slug)
        self.typist.short_pause()
        rec.emit("file", op="create", path=PATH)
        self._type_file()
        self._check()  # the whole file is there: what does the editor say
        self.clock.wait_s(rng.uniform(1, 8))
        rec.emit("run", **run_result(self.ed.buf.text(), [], self.file.slug))
        self.clock.wait_s(rng.uniform(5, 90))  # reading the errors
        getattr(self, f"_fix_{self.file.fix_style}")()
        self.clock.wait_s(rng.uniform(1, 6))
        self._check()
        self.clock.wait_s(rng.uniform(1, 6))
        rec.emit("run", **run_result(self.ed.buf.text(), [], self.file.slug))
        text = self.ed.buf.text()
        assert text == "".join(line + "\n" for s in self.segments for line in s.current), "segments lost track"
        self.clock.wait_s(rng.uniform(1, 30))
        rec.emit("snapshot", files={PATH: text})

    def _type_file(self) -> None:
        rng = self.rng
        for block in _blocks(self.file.buggy.split("\n")[:-1], rng):
            text = "".join(line + "\n" for line in block)
            if rng.random() < 0.8:
                self.typist.type(self.ed, text)
            else:  # pasted from the problem page or an earlier attempt
                self.typist.paste(self.ed, text)
            self.clock.wait_s(rng.uniform(2, 30) if rng.random() < 0.85 else rng.uniform(60, 300))
            if rng.random() < 0.5:
                self._check()

    def _on_pause(self, ed: FileEditor) -> None:
        if self.rng.random() < 0.1:
            self._check()

    def _check(self) -> None:
        text = self.ed.buf.text()
        self.diagnostics.request(self.rec, PATH, text, 0, self.rng.randrange(40_000, 900_000), files={PATH: text})

    def _bugs(self) -> list[int]:
        return [k for k, s in enumerate(self.segments) if s.bug is not None]

    def _fix_one_by_one(self) -> None:
        for bug in sorted({self.segments[k].bug for k in self._bugs()}):
            self.typist.short_pause()
            for k in self._bugs():
                if self.segments[k].bug == bug:
                    self._fix_segment(k, self.typist)
            self.clock.wait_s(self.rng.uniform(1, 10))
            self._check()

    def _fix_one_burst(self) -> None:
        for k in self._bugs():
            self.clock.wait_ms(self.rng.uniform(300, 1500))  # to the next one, under the miner's 2 s pause
            self._fix_segment(k, self.steady, log_moves=False)

    def _fix_scattered(self) -> None:
        rng = self.rng
        bugs = sorted({self.segments[k].bug for k in self._bugs()})
        rng.shuffle(bugs)
        for number, bug in enumerate(bugs):
            if number == 1 or rng.random() < 0.4:  # at least one between two fixes
                self._unrelated_edit()
            self.typist.short_pause()
            for k in self._bugs():
                if self.segments[k].bug == bug:
                    self._fix_segment(k, self.typist)
            if rng.random() < 0.4:
                self._check()
        if rng.random() < 0.5:
            self._unrelated_edit()

    def _line_of(self, k: int) -> int:
        return sum(len(s.current) for s in self.segments[:k])

    def _fix_segment(self, k: int, typist: Typist, log_moves: bool = True) -> None:
        seg, rng, ed = self.segments[k], self.rng, self.ed
        old = "".join(line + "\n" for line in seg.current)
        new = "".join(line + "\n" for line in seg.target)
        first = self._line_of(k)
        begin, old_part, new_part = smallest_difference(old, new)
        start = _position(old, begin, first)
        end = _position(old, begin + len(old_part), first)
        seg.current, seg.bug = list(seg.target), None
        if old_part and rng.random() < 0.35:  # select the wrong text and type over it: one packet
            ed.goto(*end, log=log_moves and rng.random() < 0.6)
            ed.editor("selection", {"start": {"line": start[0], "character": start[1]},
                                    "end": {"line": end[0], "character": end[1]}})
            ed.packet(new_part, back=len(old_part), whole=True)
            typist.keystroke_gap()
            return
        ed.goto(*(end if old_part else start), log=log_moves and rng.random() < 0.6)
        if old_part:
            typist.erase(ed, len(old_part))
        if new_part:
            typist.type(ed, new_part)

    def _unrelated_edit(self) -> None:
        rng = self.rng
        bug_lines = [self._line_of(k) for k in self._bugs()]
        places, near = [], []
        for k, seg in enumerate(self.segments):
            at = self._line_of(k)
            for offset in sorted(seg.safe):
                far = all(abs(at + offset - line) >= 3 for line in bug_lines)
                (places if far else near).append((k, offset))
        if not places + near:
            return
        k, offset = rng.choice(places or near)
        seg = self.segments[k]
        line = seg.current[offset]
        text = line[: len(line) - len(line.lstrip())] + rng.choice(_COMMENTS) if rng.random() < 0.6 else ""
        self.typist.short_pause()
        self.ed.goto(self._line_of(k) + offset, 0, log=True)
        self.typist.type(self.ed, text + "\n")
        head = _Segment(seg.current[:offset], seg.target[:offset], None, seg.oracle_start,
                        {s for s in seg.safe if s < offset})
        tail = _Segment(seg.current[offset:], seg.target[offset:], None, seg.oracle_start + offset,
                        {s - offset for s in seg.safe if s >= offset})
        added = _Segment([text], [text])
        self.segments[k : k + 1] = [s for s in (head, added, tail) if s.current]


def _segments(file: MultiBugFile) -> list[_Segment]:
    oracle = file.oracle.split("\n")[:-1]
    buggy = file.buggy.split("\n")[:-1]
    starts = {node.lineno - 1 for node in ast.walk(ast.parse(file.oracle)) if isinstance(node, ast.stmt)}
    hunks = sorted(((h, number) for number, bug in enumerate(file.bugs) for h in bug.hunks),
                   key=lambda t: (t[0].oracle_start, t[0].oracle_end))
    out, at = [], 0

    def plain(lo: int, hi: int) -> None:
        if hi > lo:
            out.append(_Segment(oracle[lo:hi], oracle[lo:hi], None, lo, {i - lo for i in starts if lo <= i < hi}))

    for h, number in hunks:
        plain(at, h.oracle_start)
        out.append(_Segment(buggy[h.buggy_start : h.buggy_end], oracle[h.oracle_start : h.oracle_end], number))
        at = h.oracle_end
    plain(at, len(oracle))
    return out


def _blocks(lines: list[str], rng: random.Random) -> list[list[str]]:
    """The lines cut into pieces of a few lines, never right after a line that opens a block or goes on."""
    blocks: list[list[str]] = []
    current: list[str] = []
    size = rng.randint(2, 8)
    indent = 0
    for i, line in enumerate(lines):
        current.append(line)
        if line.strip():
            indent = len(line) - len(line.lstrip())
        following = lines[i + 1] if i + 1 < len(lines) else None
        if following is None or (len(current) >= size and following.strip()
                                 and len(following) - len(following.lstrip()) <= indent
                                 and not current[-1].rstrip().endswith(_OPENERS)):
            blocks.append(current)
            current, size = [], rng.randint(2, 8)
    return blocks


def _position(text: str, offset: int, first_line: int) -> tuple[int, int]:
    """(line, column) of code point `offset` of `text`, which starts at line `first_line`."""
    before = text[:offset]
    return first_line + before.count("\n"), offset - (before.rfind("\n") + 1)
