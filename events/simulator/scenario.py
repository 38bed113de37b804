"""One repl's life: files written in bursts with mistakes, fixes, runs, shell, renames, breaks."""

from __future__ import annotations

import random
import re

from . import churn, extras
from .clock import Clock
from .content import FileSpec, repl_files
from .corpus import Corpus
from .diagnostics import DiagnosticLog
from .editor import FileEditor
from .plan import MIN_BLOCK_CHARS, split_blocks
from .recorder import Recorder
from .typist import Typist
from .work import FileWork, Pending

DAY_US = 86_400_000_000
MIN_EVENTS = 130  # even a tiny repl gets this many events before its wrap-up
_RUNTIME_ERRORS = {"NameError", "AttributeError", "TypeError"}
_SCRATCH = (
    ("scratch.py", 'nums = [3, 1, 2]\nprint(sorted(nums))\nprint("ça marche ✔")\n'),
    ("test.py", "def add(a, b):\n    return a + b\n\n\nprint(add(2, 3))\n"),
    ("notes.txt", "ideas:\n- save high scores\n- 中文 support\n"),
)
_KEEP = {"main.py", "requirements.txt"}  # names tools look for: never renamed
_RENAMES = {
    "utils.py": "tools/utils.py",
    "helpers.py": "helper.py",
    "models.py": "model.py",
    "README.md": "docs/README.md",
    "data.json": "data/players.json",
}


class ReplScenario:
    """Plays one repl: everything its user does, in order, logged through a Recorder."""

    def __init__(self, index: int, seed: int, corpus: Corpus, diagnostics: DiagnosticLog) -> None:
        rng = self.rng = random.Random(f"otlake-sim/{seed}/{index}")
        self.repl_id = f"repl-{index:06d}-{rng.getrandbits(24):06x}"
        self.clock = Clock(rng.randrange(0, 14 * DAY_US))
        user_id = None if rng.random() < 0.07 else rng.randint(10_000, 40_000_000)
        self.rec = Recorder(self.repl_id, user_id, self.clock, rng)
        self.diagnostics = diagnostics
        self.title = extras.repl_title(rng)
        self.slug = re.sub(r"[^A-Za-z0-9-]", "", self.title)
        self.specs = repl_files(rng, corpus, self.title)
        self.typist = Typist(rng, self.clock, on_pause=self._on_pause)
        self.works: dict[str, FileWork] = {}  # live files by path
        self.written: dict[int, FileWork] = {}  # by id() of their FileSpec, whatever their path now
        self.pending: list[Pending] = []
        self.debug_lines: list[churn.DebugLine] = []
        self.keystrokes = rng.randint(40, 160)  # characters this user will type by hand
        self.checks_left = rng.randint(14, 30)

    def play(self) -> list[dict]:
        """Simulates the whole repl and returns its events, numbered."""
        rng, rec = self.rng, self.rec
        rec.emit(
            "repl",
            language="python3",
            is_private=rng.random() < 0.15,
            owner=extras.owner_name(rng),
            title=self.title,
        )
        if rng.random() < 0.5:
            self._shell()
        steps = self._steps()
        extras_at = {k: rng.randrange(len(steps)) for k in ("rename", "scratch", "install")}
        for number, (spec, block) in enumerate(steps):
            work = self.written.get(id(spec)) or self._create(spec)
            self._deliver(work, block)
            self._interject(work)
            if number == extras_at["rename"] and rng.random() < 0.45:
                self._rename()
            if number == extras_at["scratch"] and rng.random() < 0.5:
                self._scratch()
            if number == extras_at["install"] and rng.random() < 0.5:
                self._install()
        self._wrap_up()
        return rec.numbered()

    def _steps(self) -> list[tuple[FileSpec, int]]:
        # main.py first, other files written in one go each at some point in between
        rng = self.rng
        main, others = self.specs[0], self.specs[1:]
        steps = [(main, b) for b in range(len(_blocks(main)))]
        for i in range(len(steps) - 1):
            if rng.random() < 0.12:  # write the next block first, then go back for this one
                steps[i], steps[i + 1] = steps[i + 1], steps[i]
        for spec in others:
            at = rng.randint(1, len(steps))
            steps[at:at] = [(spec, b) for b in range(len(_blocks(spec)))]
        return steps

    def _create(self, spec: FileSpec) -> FileWork:
        ed = FileEditor(spec.path, self.rec, self.rng)
        self.typist.short_pause()
        if spec.role == "main" or self.rng.random() < 0.85:
            self.rec.emit("file", op="create", path=spec.path)  # else the first packet creates it
        work = FileWork(ed, spec.text, self.rng, _block_chars(spec))
        self.works[spec.path] = work
        self.written[id(spec)] = work
        return work

    def _deliver(self, work: FileWork, block: int) -> None:
        rng = self.rng
        # reading, thinking, looking things up between two pieces of code
        self.clock.wait_s(rng.uniform(3, 40) if rng.random() < 0.8 else rng.uniform(60, 600))
        text = work.plan.block_text(block)
        lines = len(work.plan.blocks[block])
        helper = not work.ed.path.startswith("main")
        if self.keystrokes <= 0 or (helper and rng.random() < 0.8):
            typed = 0
        elif len(text) <= 260 and rng.random() < 0.6:
            typed = lines
        else:
            typed = rng.choice((0, 0, 1, 1, 2, 3))
        typed_chars = sum(len(line) + 1 for line in work.plan.blocks[block][:typed])
        self.keystrokes -= typed_chars
        rest = "ghost" if rng.random() < 0.35 else "paste"
        self.pending += work.deliver(block, self.typist, typed, rest, mistake_rate=0.3)
        if work.ed.is_python and rng.random() < 0.35:
            broken = work.break_line(self.typist)
            if broken is not None:
                self.pending.append(broken)
        if work.ed.is_python and rng.random() < 0.5:
            self._check(work)

    def _interject(self, work: FileWork) -> None:
        rng = self.rng
        urgent = [p for p in self.pending if p.mistake.breaks_syntax]
        if urgent and rng.random() < 0.5:
            self.pending.remove(urgent[0])
            self._fix(urgent[0])
        elif self.pending and rng.random() < 0.25:
            self._fix(self.pending.pop(0 if rng.random() < 0.7 else -1))
        if work.ed.is_python and rng.random() < 0.06:
            self.debug_lines.append(churn.add_debug_print(work, self.typist))
        self.debug_lines = [d for d in self.debug_lines if d is not None]
        if self.debug_lines and rng.random() < 0.15:
            churn.remove_debug_print(self.debug_lines.pop(0), self.typist)
        if rng.random() < 0.03:
            churn.rewrite_lines(work, self.typist, most=2)
        elif rng.random() < 0.06:
            churn.retype_word(work, self.typist)
        if work.ed.can_undo() and rng.random() < 0.08:
            self.clock.wait_ms(rng.uniform(300, 2000))
            work.ed.undo(redo_chance=0.6)
        if rng.random() < 0.15:
            self._run()
        if rng.random() < 0.07:
            self._shell()
        if rng.random() < 0.035:
            self._break()

    def _fix(self, pending: Pending) -> None:
        if self.rng.random() < 0.2:
            return  # the user never gets to this one
        fixed = pending.work.ed.path in self.works and pending.work.fix(pending, self.typist)
        if fixed and pending.work.ed.is_python and self.rng.random() < 0.7:
            self._check(pending.work)

    def _on_pause(self, ed: FileEditor) -> None:
        if ed.is_python and ed.path in self.works and self.rng.random() < 0.25:
            self._check(self.works[ed.path])

    def _check(self, work: FileWork) -> None:
        if self.checks_left <= 0:
            return
        self.checks_left -= 1
        rng = self.rng
        later = rng.randint(1, 5) if rng.random() < 0.1 else 0  # now and then the result is late
        self.diagnostics.request(
            self.rec, work.ed.path, work.ed.buf.text(), later, rng.randrange(40_000, 900_000),
            files={path: other.ed.buf.text() for path, other in self.works.items()},
        )

    def _run(self) -> None:
        main = self.works.get("main.py")
        if main is None:
            return
        self.clock.wait_s(self.rng.uniform(1, 6))
        text = main.ed.buf.text()
        errors = []
        for pending in self.pending:
            if pending.work is main and pending.mistake.error.split(":")[0] in _RUNTIME_ERRORS:
                line = _line_of(main, pending)
                if line is not None:
                    errors.append((line, main.ed.buf.line(line), pending.mistake.error))
        self.rec.emit("run", **extras.run_result(text, errors, self.slug))
        self.clock.wait_s(self.rng.uniform(0.5, 4))

    def _shell(self) -> None:
        self.clock.wait_s(self.rng.uniform(1, 10))
        self.rec.emit("shell", command=self.rng.choice(extras.SHELL_COMMANDS))

    def _install(self) -> None:
        fields = extras.install(self.rng)
        self.clock.wait_s(self.rng.uniform(1, 10))
        if fields["manager"] == "pip" and self.rng.random() < 0.6:
            self.rec.emit("shell", command="pip install " + " ".join(fields["packages"]))
            self.clock.wait_s(self.rng.uniform(2, 30))
        self.rec.emit("package_install", **fields)

    def _break(self) -> None:
        rng = self.rng
        self.clock.wait_s(
            rng.uniform(40 * 60, 3 * 86_400) if rng.random() < 0.6 else rng.uniform(60, 600)
        )

    def _rename(self) -> None:
        movable = [p for p in self.works if p not in _KEEP and _new_name(p) not in self.works]
        if not movable:
            return
        path = self.rng.choice(movable)
        dest = _new_name(path)
        work = self.works.pop(path)
        self.typist.short_pause()
        self.rec.emit("file", op="move", path=path, dest=dest)
        work.ed.path = dest
        self.works[dest] = work
        churn.retype_word(work, self.typist)  # and goes on editing it
        main = self.works.get("main.py")
        if main is not None and path.endswith(".py") and "/" not in dest:
            # then repairs the imports of the old module name, line by line
            old, new = path[:-3], dest[:-3]
            pattern = re.compile(rf"\b{re.escape(old)}\b")
            for line in range(main.ed.buf.line_count):
                found = pattern.search(main.ed.buf.line(line))
                if found and self.rng.random() < 0.9:
                    self.typist.replace_span(main.ed, line, found.start(), old, new)

    def _scratch(self) -> None:
        path, text = self.rng.choice(_SCRATCH)
        if path in self.works:
            return
        for attempt in range(2 if self.rng.random() < 0.5 else 1):
            work = self._create(FileSpec(path, text, "data"))
            self.typist.type(work.ed, text)
            if work.ed.is_python:
                self._check(work)
            if attempt == 0 and work.ed.is_python and self.rng.random() < 0.5:
                self._run_file(path)
            self.typist.short_pause()
            self.rec.emit("file", op="remove", path=path)
            del self.works[path]
            self.pending = [p for p in self.pending if p.work is not work]

    def _run_file(self, path: str) -> None:
        self.clock.wait_s(self.rng.uniform(1, 4))
        self.rec.emit("run", command=f"python {path}", exit_code=0, output_tail="")

    def _tinker(self) -> None:
        # a small repl still gets worked on: the user keeps changing main.py for a while
        main = self.works.get("main.py")
        for _ in range(200):
            if main is None or len(self.rec.events) >= MIN_EVENTS:
                return
            broken = main.break_line(self.typist)
            if broken is not None:
                self.pending.append(broken)
            churn.retype_word(main, self.typist)
            self._interject(main)

    def _wrap_up(self) -> None:
        rng = self.rng
        self._tinker()
        for pending in list(self.pending):
            if rng.random() < 0.5:
                self.pending.remove(pending)
                self._fix(pending)
        for work in list(self.works.values()):
            if work.ed.is_python and rng.random() < 0.5:
                self._check(work)
        self._run()
        self.clock.wait_s(rng.uniform(1, 30))
        files = {path: work.ed.buf.text() for path, work in sorted(self.works.items())}
        self.rec.emit("snapshot", files=files)


def _new_name(path: str) -> str:
    if path in _RENAMES:
        return _RENAMES[path]
    stem, dot, ext = path.rpartition(".")
    return f"my_{stem}.{ext}" if dot else f"{path}.old"


def _block_chars(spec: FileSpec) -> int:
    # helpers come mostly from elsewhere (pasted, completed): they arrive in bigger pieces
    return MIN_BLOCK_CHARS if spec.role == "main" else 700


def _blocks(spec: FileSpec) -> list[list[str]]:
    return split_blocks(spec.text, _block_chars(spec))


def _line_of(work: FileWork, pending: Pending) -> int | None:
    mistake = pending.mistake
    near = work.plan.start_of(pending.block) + pending.offset
    if mistake.wrong is not None:
        return work.ed.buf.find_line(mistake.wrong, near)
    name = mistake.error.split("'")[1]
    for index in range(work.ed.buf.line_count):
        if name in work.ed.buf.line(index) and index != near:
            return index
    return None
