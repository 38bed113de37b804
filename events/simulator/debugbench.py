"""DebugBench repls with several bugs: LeetCode solutions typed with 2-4 planted bugs, checked, then fixed.

A DebugBench record holds a correct solution (`oracle_code`) and the same
code with one planted bug (`buggy_code`). The record's bug is the line hunks
between the two, both normalized (tabs expanded, trailing spaces and outer
blank lines dropped), less the noise the planting left: comment or blank
lines dropped around the change, or hunks that only add or drop such lines
(the oracle and the buggy code often differ in comments). Records of one
slug with different bug kinds (subtypes) are combined: bugs that neither
overlap nor touch are planted together into the slug's first oracle (a
record whose oracle differs from it keeps only the hunks whose lines, with
one line of context, are still there). Each combined file records its
planted bugs: subtype, oracle lines replaced, buggy lines holding it.

Each file is then played as a public repl (debugbench_play): typed into
main.py in bursts, linted at pauses, run, and edited into the oracle in one
of three styles (`FIX_STYLES`).
"""

from __future__ import annotations

import ast
import difflib
import json
import pathlib
import random
import warnings
from dataclasses import asdict, dataclass

from ..errors import OtlakeError
from .debugbench_play import FIX_STYLES, play_file
from .diagnostics import DiagnosticLog, Linter

# the kinds pyright and ruff can see; faulty indexing fails only at run time, so it is left out by default
LSP_SUBTYPES = ("illegal_comment", "illegal_indentation", "illegal_keywords", "missing_colons", "misused_equals",
                "unclosed_parentheses", "unclosed_string", "undefined_methods", "undefined_objects")
MAX_HUNKS = 3          # a record with more is a rewrite, not one planted bug
MAX_CHANGED_LINES = 8  # lines removed plus lines added by one record's bug, at most


class DebugBenchError(OtlakeError):
    """The DebugBench folder cannot give the files asked for."""


@dataclass(frozen=True)
class PlantedHunk:
    """One contiguous change of a planted bug: oracle lines [oracle_start, oracle_end) became
    buggy lines [buggy_start, buggy_end) (0-based; an empty range is an insertion or deletion point)."""

    oracle_start: int
    oracle_end: int
    buggy_start: int
    buggy_end: int


@dataclass(frozen=True)
class PlantedBug:
    """A record's bug as planted into a combined file."""

    subtype: str
    explanation: str
    hunks: tuple[PlantedHunk, ...]

    @property
    def lines(self) -> list[int]:
        """0-based lines of the buggy file holding the bug (a deleted line: the line after it)."""
        out: list[int] = []
        for h in self.hunks:
            out += list(range(h.buggy_start, h.buggy_end)) or [h.buggy_start]
        return out


@dataclass(frozen=True)
class MultiBugFile:
    """An oracle with several planted bugs, and how its repl will fix them."""

    repl_id: str
    slug: str
    oracle: str
    buggy: str
    bugs: tuple[PlantedBug, ...]
    fix_style: str

    def to_dict(self) -> dict:
        out = asdict(self)
        for bug, planted in zip(out["bugs"], self.bugs):
            bug["lines"] = planted.lines
        return out


@dataclass(frozen=True)
class _Hunk:
    start: int  # oracle lines [start, end) replaced by `lines`
    end: int
    lines: tuple[str, ...]


@dataclass(frozen=True)
class _Bug:
    subtype: str
    explanation: str
    hunks: tuple[_Hunk, ...]


def normalized_lines(code: str) -> list[str]:
    """The lines of `code` with tabs expanded, trailing spaces and leading/trailing blank lines dropped."""
    lines = [line.rstrip() for line in code.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4).split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _filler(line: str) -> bool:
    text = line.strip()
    return not text or text.startswith("#")


def bug_hunks(oracle: list[str], buggy: list[str]) -> list[_Hunk]:
    """The hunks turning `oracle` into `buggy`, less comment and blank lines the planting dropped or added."""
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, oracle, buggy, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        # dropped comments and blank lines around the change are not the bug; an added comment may be
        while i1 < i2 and _filler(oracle[i1]):
            i1 += 1
        while i2 > i1 and _filler(oracle[i2 - 1]):
            i2 -= 1
        while j1 < j2 and not buggy[j1].strip():
            j1 += 1
        while j2 > j1 and not buggy[j2 - 1].strip():
            j2 -= 1
        code_before = [x for x in oracle[i1:i2] if not _filler(x)]
        code_after = [x for x in buggy[j1:j2] if not _filler(x)]
        if code_before == code_after:
            continue
        out.append(_Hunk(i1, i2, tuple(buggy[j1:j2])))
    return out


def _moved(hunks: list[_Hunk], own: list[str], base: list[str]) -> list[_Hunk]:
    """Hunks of a record whose oracle is `own`, placed on `base`: only those whose lines and context are there."""
    to_base = {}
    for a, b, size in difflib.SequenceMatcher(None, own, base, autojunk=False).get_matching_blocks():
        for k in range(size):
            to_base[a + k] = b + k
    out = []
    for h in hunks:
        first, last = max(h.start - 1, 0), min(h.end + 1, len(own))
        if first in to_base and all(i in to_base and to_base[i] - to_base[first] == i - first
                                    for i in range(first, last)):
            shift = to_base[first] - first
            out.append(_Hunk(h.start + shift, h.end + shift, h.lines))
    return out


def _apply(oracle: list[str], hunks: list[_Hunk]) -> list[str]:
    out, at = [], 0
    for h in sorted(hunks, key=lambda h: (h.start, h.end)):
        out += oracle[at : h.start] + list(h.lines)
        at = h.end
    return out + oracle[at:]


def _ast_dump(lines: list[str]) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.dump(ast.parse("\n".join(lines) + "\n"))
    except (SyntaxError, ValueError):
        return None


def load_slugs(records_dir: pathlib.Path | str, subtypes: tuple[str, ...] = LSP_SUBTYPES
               ) -> dict[str, tuple[list[str], list[_Bug]]]:
    """{slug: (base oracle lines, bugs of its records)} for slugs whose bugs span two subtypes or more."""
    folder = pathlib.Path(records_dir)
    files = sorted(p for p in folder.glob("python3_*.json") if p.stem.removeprefix("python3_") in subtypes)
    if not files:
        raise DebugBenchError(f"no DebugBench files python3_<subtype>.json for {', '.join(subtypes)} in {folder}; "
                              "point records_dir at DebugBench's benchmark folder (shared/datasets/debugbench)")
    by_slug: dict[str, list[tuple[str, dict]]] = {}
    for path in files:
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DebugBenchError(f"{path}: not a DebugBench JSON list of records ({e})") from e
        for number, record in enumerate(records):
            if not isinstance(record, dict) or not all(isinstance(record.get(k), str)
                                                       for k in ("slug", "oracle_code", "buggy_code")):
                raise DebugBenchError(f"{path}: record {number} lacks the string fields slug, oracle_code, buggy_code")
            by_slug.setdefault(record["slug"], []).append((path.stem.removeprefix("python3_"), record))
    out = {}
    for slug, records in by_slug.items():
        base = normalized_lines(records[0][1]["oracle_code"])
        base_ast = _ast_dump(base)
        if base_ast is None:
            continue  # the fixed file could not be compared with its oracle
        bugs = []
        for subtype, record in records:
            own = normalized_lines(record["oracle_code"])
            hunks = bug_hunks(own, normalized_lines(record["buggy_code"]))
            if not hunks or len(hunks) > MAX_HUNKS or sum(h.end - h.start + len(h.lines) for h in hunks) > MAX_CHANGED_LINES:
                continue
            if own != base:
                hunks = _moved(hunks, own, base)
            if hunks and _ast_dump(_apply(base, hunks)) != base_ast:  # a change that changes nothing is no bug
                bugs.append(_Bug(subtype, str(record.get("explanations") or "").strip(), tuple(hunks)))
        if len({b.subtype for b in bugs}) >= 2:
            out[slug] = (base, bugs)
    return out


def _apart(a: _Hunk, b: _Hunk) -> bool:
    return a.end < b.start or b.end < a.start  # at least one unchanged line between them


def _combine(rng: random.Random, bugs: list[_Bug], k: int) -> list[_Bug]:
    chosen: list[_Bug] = []
    for bug in rng.sample(bugs, len(bugs)):
        if len(chosen) == k:
            break
        if bug.subtype in {c.subtype for c in chosen}:
            continue
        if all(_apart(h, g) for c in chosen for g in c.hunks for h in bug.hunks):
            chosen.append(bug)
    return chosen


def _planted(base: list[str], bugs: list[_Bug]) -> tuple[list[str], tuple[PlantedBug, ...]]:
    owner = {h: b for b in bugs for h in b.hunks}
    placed: dict[_Hunk, PlantedHunk] = {}
    shift = 0
    for h in sorted(owner, key=lambda h: (h.start, h.end)):
        placed[h] = PlantedHunk(h.start, h.end, h.start + shift, h.start + shift + len(h.lines))
        shift += len(h.lines) - (h.end - h.start)
    planted = tuple(PlantedBug(b.subtype, b.explanation, tuple(placed[h] for h in sorted(b.hunks, key=lambda h: h.start)))
                    for b in sorted(bugs, key=lambda b: min(h.start for h in b.hunks)))
    return _apply(base, list(owner)), planted


def multi_bug_files(records_dir: pathlib.Path | str, count: int, seed: int, bugs: tuple[int, int] = (2, 4),
                    subtypes: tuple[str, ...] = LSP_SUBTYPES) -> list[MultiBugFile]:
    """`count` combined files, each with bugs[0]..bugs[1] bugs of distinct subtypes; the same seed, the same files.

    Each file draws its number of bugs, then takes the next slug of a
    shuffled round (every slug before any twice) that can hold that many; the
    fix styles come in equal shares, shuffled.
    """
    low, high = bugs
    if count < 0 or not 1 <= low <= high:
        raise ValueError(f"need count >= 0 and 1 <= bugs[0] <= bugs[1], got count {count}, bugs {bugs}")
    slugs = load_slugs(records_dir, subtypes)
    rng = random.Random(f"otlake-debugbench/{seed}")
    names = sorted(slugs)
    styles = [FIX_STYLES[i % len(FIX_STYLES)] for i in range(count)]
    rng.shuffle(styles)
    out: list[MultiBugFile] = []
    order: list[str] = []
    misses = 0
    while len(out) < count:
        if not order:
            order = rng.sample(names, len(names))
        k = rng.randint(low, high)
        best: tuple[int, list[_Bug]] | None = None
        for pos in range(len(order) - 1, -1, -1):  # the next slug of the round that takes k bugs
            chosen = _combine(rng, slugs[order[pos]][1], k)
            if best is None or len(chosen) > len(best[1]):
                best = (pos, chosen)
            if len(chosen) == k:
                break
        pos, chosen = best
        slug = order.pop(pos)
        base = slugs[slug][0]
        if len(chosen) < low:
            misses += 1
            if misses > len(names):
                raise DebugBenchError(f"no slug in {records_dir} has {low} combinable bugs of distinct subtypes")
            continue
        buggy, planted = _planted(base, chosen)
        index = len(out)
        repl_id = f"debugbench-{index:05d}-{rng.getrandbits(24):06x}"
        out.append(MultiBugFile(repl_id, slug, "\n".join(base) + "\n", "\n".join(buggy) + "\n", planted,
                                styles[index]))
    return out


def debugbench_sessions(records_dir: pathlib.Path | str, repls: int, seed: int, linter: Linter | None = None,
                        bugs: tuple[int, int] = (2, 4), files: list[MultiBugFile] | None = None) -> list[dict]:
    """Events of `repls` DebugBench repls with several bugs each, ordered by time as a real log would be.

    `linter` gives the diagnostics users saw (default ruff alone; bench.usermine
    passes the meta-LSP, lsp_runner.linter.MetaLspLinter, as `otlake demo` does).
    `files` plays these combined files instead of making them (from
    `multi_bug_files` with the same seed and bugs: their planted bugs).
    """
    if files is None:
        files = multi_bug_files(records_dir, repls, seed, bugs)
    diagnostics = DiagnosticLog(linter=linter)
    recorders = [play_file(f, seed, i, diagnostics) for i, f in enumerate(files)]
    diagnostics.flush()  # one batch for every repl's file states
    events = [event for rec in recorders for event in rec.numbered()]
    events.sort(key=lambda e: (e["ts"], e["repl_id"], e["seq"]))
    return events


def write_manifest(files: list[MultiBugFile], path: pathlib.Path | str) -> None:
    """One JSON line per combined file: repl, slug, oracle, buggy code, planted bugs and fix style."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.writelines(json.dumps(f.to_dict(), ensure_ascii=False) + "\n" for f in files)
