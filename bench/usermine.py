"""User-fix mining on multi-error repls: of the errors users fixed, how many get an accepted diff.

Two data sets, each ingested into a fresh warehouse under bench-data/usermine/:
`debugbench` (--repls repls of DebugBench solutions with 2-4 planted bugs of
distinct kinds, typed, linted by the meta-LSP, then edited into the correct
solution: events.simulator.debugbench) and `demo` (the sessions `otlake
demo` makes: --demo-repls repls, seed --demo-seed). On each, the pairs stage
and then `synth --source user`. Per data set:

  pairs        rows of `pairs`
  user_fixed   pairs whose error the user fixed: the target diagnostic (same code, same normalized
               message, on the pair's line mapped through the later edits, difflib) is no longer
               reported on the file's final state (checked by the meta-LSP beside the repl's other
               final files)
  planted      (debugbench) user-fixed pairs whose diagnostic the whole buggy file also shows, at the
               pair's line mapped onto it, on a planted bug's line or next to one (not a transient
               error of a half-typed line; the solution's own errors, such as an unimported `List`,
               stay in the final file: never planted)
  fixed_here   user-fixed pairs whose error the edits of this file fixed: the target is also gone
               from the final file checked beside the repl's other files as they were at the pair's
               instant (an import of a module the user created later is fixed in another file, and
               no line diff of this file can hold that fix)
  accepted     user diffs the verification chain accepted (and of them, on user-fixed pairs)
  headline     accepted / fixed_here (and accepted / user_fixed)
  by_fix_style (debugbench) the same counts per fix style, and per phase: `typing` (logged on a
  by_phase     half-typed file) or `typed` (on the whole buggy file, or while fixing it)
  steps        synth.verify.count_steps: reached, passed, failed_by_reason per step
  rejections   the 10 most common reasons a user-fixed pair (and, apart, a planted one) got no
               accepted diff, each with one example: code excerpt, diagnostic, candidate diff,
               reason, and the user's edits from the pair to the final file. Pairs without a
               candidate are told apart by what the miner's public pieces (synth.usermine:
               pause_points, windowed_candidates, adds_no_syntax_error) make of their later states:
               no later edit, no paused state changes lines near the error, every windowed
               candidate adds a syntax error, or some add none and none cleared the target.

`python -m bench.usermine --repls 40 --seed 1`; results in bench-data/usermine.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from collections import Counter, defaultdict
from difflib import SequenceMatcher
from pathlib import Path

from events.simulator import simulate, write_jsonl
from events.simulator.debugbench import debugbench_sessions, multi_bug_files, write_manifest
from lsp_runner.diagnostic import normalize_message
from lsp_runner.linter import MetaLspLinter
from lsp_runner.pool import LspPool
from lsp_runner.snapshot import Snapshot
from otlake.dataset_cli import DEBUGBENCH
from otlake.stages import PairsOptions, SynthOptions, build_pairs, ingest_files, run_synth
from synth.linediff import render
from synth.usermine import (
    adds_no_syntax_error,
    is_syntax_target,
    pause_points,
    unresolved_names,
    windowed_candidates,
)
from synth.verify import reason_group
from warehouse.store import Warehouse
from warehouse.stores import DuckDBStore, read_timeline

from .common import OUT, checkout, git_rev, machine, run_script

END_US = 2**62  # after every event
EXCERPT = 4     # lines shown on each side of the error line


def mapped_lines(old: str, new: str, line: int) -> set[int]:
    """Where line `line` (0-based) of `old` is in `new`: the same line, or the line at its place in what
    replaced it (the last one if fewer replaced it); none if it was deleted."""
    a, b = old.split("\n"), new.split("\n")
    line = min(line, len(a) - 1)
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if i1 <= line < i2:
            return {min(j1 + line - i1, j2 - 1)} if j2 > j1 else set()
    return set()


def _sessions(name: str, repls: int, seed: int, workers: int, records: Path) -> tuple:
    folder = OUT / "usermine"
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{name}-{repls}-{seed}-meta-lsp.jsonl"
    files = multi_bug_files(records, repls, seed) if name == "debugbench" else None
    if files is not None:
        write_manifest(files, folder / f"{name}-{repls}-{seed}-bugs.jsonl")
    if not log.exists():
        started = time.perf_counter()
        linter = MetaLspLinter(workers=workers)
        events = (debugbench_sessions(records, repls, seed, linter, files=files) if files is not None
                  else simulate(repls, seed, linter=linter))
        write_jsonl(events, log)
        print(f"{name}: {len(events)} events simulated in {time.perf_counter() - started:.0f} s -> {log}")
    return log, {f.repl_id: f for f in files or ()}


def _final_states(con, rows: list[dict]) -> dict[tuple, tuple[dict, str] | None]:
    """Per (repl, file lineage): the repl's final files, with the lineage's last text at the pair's path."""
    out: dict[tuple, tuple[dict, str] | None] = {}
    by_repl: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_repl[r["repl_id"]].append(r)
    for repl_id, pairs in by_repl.items():
        history = read_timeline(DuckDBStore(con), repl_id)
        end = {p: c for p, c in history.states_at([END_US])[END_US].items() if c is not None}
        steps = {r["pair_id"]: history.steps_before(r["seq"]) for r in pairs}
        then = history.states_after(list(steps.values()))
        for r in pairs:
            r["others_then"] = {p: c for p, c in then[steps[r["pair_id"]]].items() if c is not None and p != r["path"]}
            lineage = history.lineage_before(r["path"], r["seq"])
            r["lineage"] = (repl_id, lineage[0] if lineage else None, r["path"])
            if r["lineage"] in out:
                continue
            versions = history.versions(lineage[0]) if lineage else []
            if not versions:
                out[r["lineage"]] = None
                continue
            last = versions[-1][0]
            final = history.contents(lineage[0], [last])[last]
            now_at = [p for _, _, p, f in history.paths if f == lineage[0]]  # the lineage's path at the end
            files = {p: c for p, c in end.items() if not now_at or p != now_at[-1]}
            out[r["lineage"]] = ({**files, r["path"]: final}, final)
    return out


def _check(snapshots: list[Snapshot], workers: int) -> dict[str, list | None]:
    """The checked file's diagnostics per snapshot (None where the servers failed)."""
    with LspPool(size=workers) as pool:
        results = {r.snapshot_id: r for r in pool.check(snapshots)}
    out = {}
    for s in snapshots:
        result = results.get(s.id)
        out[s.id] = result.diagnostics.get(s.paths[0], []) if result is not None and result.ok else None
    return out


def _reported(diags: list, code: str, message: str, lines: set[int]) -> bool:
    wanted = (code, normalize_message(message))
    return any((d.code, normalize_message(d.message)) == wanted and d.start_line in lines for d in diags)


def _user_fixed(rows: list[dict], finals: dict, files: dict, workers: int) -> None:
    """Sets r["fixed"]: the target diagnostic is gone from the file's final state (None: no final state
    known); and r["bug"] (see `_planted`)."""
    keys = [k for k, v in finals.items() if v is not None]
    snapshots = [Snapshot(f"f{i}", finals[k][0], (k[2],)) for i, k in enumerate(keys)]
    snapshots += [Snapshot(f"b-{repl_id}", {"main.py": f.buggy}, ("main.py",)) for repl_id, f in files.items()]
    here: dict[str, str] = {}  # the final file beside the other files of the pair's instant, one check each
    for r in rows:
        if finals.get(r["lineage"]) is not None:
            tree = {**r["others_then"], r["path"]: finals[r["lineage"]][1]}
            sid = "h" + hashlib.sha1(json.dumps(sorted(tree.items())).encode("utf-8", "replace")).hexdigest()
            if sid not in here.values():
                snapshots.append(Snapshot(sid, tree, (r["path"],)))
            here[r["pair_id"]] = sid
    found = _check(snapshots, workers)
    final = {k: found[f"f{i}"] for i, k in enumerate(keys)}
    for r in rows:
        diags = final.get(r["lineage"])
        if diags is None:
            r["fixed"] = r["fixed_here"] = None
            continue
        r["final"] = finals[r["lineage"]][1]
        lines = mapped_lines(r["content"], r["final"], r["start_line"])
        r["fixed"] = not _reported(diags, r["code"], r["message"], lines)
        then = found.get(here.get(r["pair_id"], ""))
        r["fixed_here"] = r["fixed"] and then is not None and not _reported(then, r["code"], r["message"], lines)
    _planted(rows, files, {repl_id: found[f"b-{repl_id}"] for repl_id in files})


def _planted(rows: list[dict], files: dict, buggy: dict[str, list | None]) -> None:
    """Sets r["bug"]: the subtype of the planted bug whose diagnostic the pair is, or None.

    That is a fixed pair whose diagnostic the whole buggy file also shows, at the pair's line mapped
    onto it, on a planted bug's line or next to one: not a transient error of a half-typed line.
    """
    for r in rows:
        f = files.get(r["repl_id"])
        r["bug"] = None
        if f is None or not r["fixed"] or buggy[r["repl_id"]] is None:
            continue
        lines = mapped_lines(r["content"], f.buggy, r["start_line"])
        if not _reported(buggy[r["repl_id"]], r["code"], r["message"], lines):
            continue
        for number, bug in enumerate(f.bugs):
            if lines & {n + d for n in bug.lines for d in (-1, 0, 1)}:
                r["bug"], r["bug_number"] = bug.subtype, number
                break


def _no_candidate_why(con, rows: list[dict]) -> None:
    """Sets r["why"] on user-fixed pairs without a candidate: what their later paused states give."""
    by_repl: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["fixed"] and r["failed_step"] == "no_fix_near_the_error":
            by_repl[r["repl_id"]].append(r)
    for repl_id, pairs in by_repl.items():
        history = read_timeline(DuckDBStore(con), repl_id)
        for r in pairs:
            file_id, version = history.lineage_before(r["path"], r["seq"])
            later = [(v, t) for v, t in history.versions(file_id) if v > version]
            picks = [later[i] for i in pause_points([t for _, t in later])]
            texts = history.contents(file_id, [v for v, _ in picks])
            syntax = is_syntax_target(r["code"])
            names = unresolved_names(r["code"], r["message"])
            found = {c for v, _ in picks for c in windowed_candidates(
                r["content"], texts[v], r["start_line"], syntax_target=syntax, names=names)} - {r["content"]}
            r["why"] = ("no later edit" if not later else "no paused state changes lines near the error"
                        if not found else "every windowed candidate adds a syntax error"
                        if not any(adds_no_syntax_error(r["content"], c) for c in found)
                        else "candidates add no syntax error, none cleared the target")


def _excerpt(content: str, line: int) -> str:
    lines = content.split("\n")
    lo, hi = max(line - EXCERPT, 0), min(line + EXCERPT + 1, len(lines))
    return "\n".join(f"{'>' if n == line else ' '}{n + 1:4} {lines[n]}" for n in range(lo, hi))


def _rejection(r: dict) -> str:
    if r["failed_step"] is None:
        return "no diffs row (deferred: the language servers failed)"
    if r.get("why"):
        return f"{r['failed_step']}: {r['why']}"
    return f"{r['failed_step']}: {reason_group(r['reason'] or '')}" if r["reason"] else r["failed_step"]


def _top_rejections(rows: list[dict], n: int = 10) -> list[dict]:
    missed = [r for r in rows if r["fixed_here"] and not r["accepted"]]
    counts = Counter(_rejection(r) for r in missed)
    out = []
    for reason, count in counts.most_common(n):
        r = min((r for r in missed if _rejection(r) == reason), key=lambda r: (len(r["content"]), r["pair_id"]))
        out.append({"reason": reason, "pairs": count, "example": {
            "repl_id": r["repl_id"], "pair_id": r["pair_id"], "diagnostic": f"{r['code']} {r['message']}",
            "line": r["start_line"] + 1, "code_excerpt": _excerpt(r["content"], r["start_line"]),
            "candidate_diff": _head(r["diff"]), "reason": r["reason"],
            "user_edits_to_the_final_file": _head(render(r["content"], r["final"])) if r.get("final") else None,
            "planted_bug": r.get("bug"), "fix_style": r.get("fix_style")}})
    return out


def _head(text: str | None, lines: int = 40) -> str | None:
    return "\n".join(text.split("\n")[:lines]) if text else None


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _summary(rows: list[dict], files: dict) -> dict:
    fixed = [r for r in rows if r["fixed"]]
    here = [r for r in rows if r["fixed_here"]]
    accepted = [r for r in rows if r["accepted"]]
    out = {"pairs": len(rows), "user_fixed": len(fixed), "final_state_unknown": sum(r["fixed"] is None for r in rows),
           "fixed_here": len(here), "accepted": len(accepted),
           "accepted_user_fixed": sum(1 for r in accepted if r["fixed"]),
           "accepted_fixed_here": sum(1 for r in accepted if r["fixed_here"]),
           "headline_accepted_over_fixed_here": _ratio(len(accepted), len(here)),
           "headline_accepted_over_user_fixed": _ratio(len(accepted), len(fixed)),
           "errors_only": {"pairs": sum(r["severity"] == 1 for r in rows),
                           "user_fixed": sum(r["severity"] == 1 for r in fixed),
                           "accepted": sum(r["severity"] == 1 for r in accepted)}}
    if files:
        planted = [r for r in rows if r["bug"]]
        out["planted"] = {
            "pairs": len(planted), "accepted": sum(1 for r in planted if r["accepted"]),
            "accepted_over_planted": _ratio(sum(1 for r in planted if r["accepted"]), len(planted)),
            "bugs": sum(len(f.bugs) for f in files.values()),
            "bugs_with_a_pair": len({(r["repl_id"], r["bug_number"]) for r in planted}),
            "bugs_with_an_accepted_diff": len({(r["repl_id"], r["bug_number"]) for r in planted if r["accepted"]}),
            "by_subtype": {s: {"pairs": len(g), "accepted": sum(1 for r in g if r["accepted"])}
                           for s, g in sorted(_group(planted, "bug").items())}}
        for key in ("fix_style", "phase"):
            out[f"by_{key}"] = {s: {"pairs": len(g), "user_fixed": sum(1 for r in g if r["fixed"]),
                                    "planted": sum(1 for r in g if r["bug"]),
                                    "accepted": sum(1 for r in g if r["accepted"]),
                                    "planted_accepted": sum(1 for r in g if r["bug"] and r["accepted"])}
                                for s, g in sorted(_group(rows, key).items())}
    return out


def _group(rows: list[dict], key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[r[key]].append(r)
    return out


def _stages(log: Path, home: Path, workers: int) -> dict:
    """Ingest, pairs and synth --source user into a fresh warehouse, with this checkout's code."""
    shutil.rmtree(home, ignore_errors=True)
    with Warehouse(home) as wh:
        ingest = ingest_files(wh, [log])
        pairs = build_pairs(wh, PairsOptions(workers=workers))
        synth = run_synth(wh, SynthOptions(workers=workers))
    return {"ingest": {"records_in": ingest.records_in, "quarantined": ingest.quarantined},
            "pairs_stage": {k: v for k, v in pairs.as_dict().items() if k != "reproduction_by_rule"},
            "user": synth.by_source["user"].as_dict(),
            "timings": {"pairs_s": round(pairs.seconds, 2), "synth_s": round(synth.seconds, 2)}}


# the same three stages, run by the baseline's own code in its own checkout and environment
_BASELINE_SCRIPT = """
import json, sys
from pathlib import Path
try:
    from otlake.stages import PairsOptions, build_pairs
except ImportError:  # a checkout from before pairs ran as a pipeline stage
    from otlake.pairs import PairsOptions, build_pairs
try:
    from otlake.stages import SynthOptions, run_synth
except ImportError:  # a checkout from before synth ran as a pipeline stage
    from otlake.synth_stage import SynthOptions, run_synth
try:
    from otlake.stages import ingest_files
except ImportError:  # a checkout from before ingest ran as a pipeline stage
    from otlake.stages import ingest_files
from warehouse.store import Warehouse
log, home, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
with Warehouse(home) as wh:
    ingest = ingest_files(wh, [log])
    pairs = build_pairs(wh, PairsOptions(workers=workers))
    synth = run_synth(wh, SynthOptions(workers=workers))
print(json.dumps({"ingest": {"records_in": ingest.records_in, "quarantined": ingest.quarantined},
                  "pairs_stage": {k: v for k, v in pairs.as_dict().items() if k != "reproduction_by_rule"},
                  "user": synth.by_source["user"].as_dict(),
                  "timings": {"pairs_s": round(pairs.seconds, 2), "synth_s": round(synth.seconds, 2)}}))
"""


def _baseline_stages(rev: str, log: Path, home: Path, workers: int) -> dict:
    """The stages at git revision `rev` (a worktree under bench-data/, its own locked environment)."""
    src = checkout(rev, OUT / "usermine" / f"src-{rev}")
    shutil.rmtree(home, ignore_errors=True)
    return run_script(src, _BASELINE_SCRIPT, [log.resolve(), home.resolve(), workers], f"the baseline {rev}")


def _measure(home: Path, files: dict, stages: dict, workers: int) -> tuple[dict, list[dict]]:
    """The figures of one warehouse after the stages (see the module's docstring), and its pair rows."""
    timings = dict(stages["timings"])
    with Warehouse(home) as wh:
        cols = ("pair_id", "repl_id", "seq", "path", "code", "severity", "message", "start_line", "content",
                "accepted", "failed_step", "reason", "diff")
        rows = [dict(zip(cols, row)) for row in wh.con.execute(
            """SELECT p.pair_id, p.repl_id, p.seq, p.path, p.code, p.severity, p.message, p.start_line, p.content,
                      coalesce(d.accepted, false), d.failed_step, d.reason, d.diff
               FROM pairs p JOIN repls r ON r.repl_id = p.repl_id AND r.is_private = false
               LEFT JOIN diffs d ON d.pair_id = p.pair_id AND d.source = 'user' ORDER BY p.pair_id""").fetchall()]
        started = time.perf_counter()
        finals = _final_states(wh.con, rows)
        _user_fixed(rows, finals, files, workers)
        _no_candidate_why(wh.con, rows)
        first_run = dict(wh.con.execute("SELECT repl_id, min(seq) FROM events WHERE kind = 'run' GROUP BY repl_id")
                         .fetchall())
        timings["final_check_s"] = round(time.perf_counter() - started, 2)
    for r in rows:
        f = files.get(r["repl_id"])
        r["fix_style"] = f.fix_style if f else None
        # typing: logged on a half-typed file; typed: on the whole buggy file, or while fixing it
        r["phase"] = (None if f is None else "typing" if r["seq"] < first_run.get(r["repl_id"], 0)
                      and r["content"] != f.buggy else "typed")
    user = stages["user"]
    return {"ingest": stages["ingest"], "pairs_stage": stages["pairs_stage"],
            **_summary(rows, files), "no_candidate": user["no_candidate"], "deferred": user["deferred"],
            "steps": user["steps"], "top_rejections": _top_rejections(rows),
            **({"top_rejections_planted": _top_rejections([r for r in rows if r["bug"]])} if files else {}),
            "timings": timings}, rows


def run_dataset(name: str, repls: int, seed: int, workers: int, records: Path = DEBUGBENCH,
                baseline: str | None = None) -> dict:
    """Simulate (or reuse), ingest into a fresh warehouse, pairs, synth --source user, and measure; the same
    with the code at git revision `baseline`, measured by this harness, when one is given."""
    log, files = _sessions(name, repls, seed, workers, records)
    home = OUT / "usermine" / name
    result, rows = _measure(home, files, _stages(log, home, workers), workers)
    result = {"repls": repls, "seed": seed, **result}
    if baseline:
        before_home = OUT / "usermine" / f"{name}-baseline"
        before, before_rows = _measure(before_home, files, _baseline_stages(baseline, log, before_home, workers),
                                       workers)
        kept = {r["pair_id"] for r in rows}
        result["baseline"] = {"rev": baseline, "repls": repls, **before,
                              # the baseline's figures on the pairs this code keeps (still_typing aside)
                              "on_the_same_pairs": _summary([r for r in before_rows if r["pair_id"] in kept], files)}
    return result


def _table(results: dict) -> str:
    head = ("data set", "repls", "pairs", "user fixed", "fixed here", "accepted", "acc. & here", "accepted/here",
            "accepted/fixed", "planted", "planted acc.", "bugs", "bugs acc.")
    rows = [head]
    for name, r in results.items():
        p = r.get("planted") or {}
        rows.append((name, r["repls"], r["pairs"], r["user_fixed"], r["fixed_here"], r["accepted"],
                     r["accepted_fixed_here"], f"{r['headline_accepted_over_fixed_here'] or 0:.1%}",
                     f"{r['headline_accepted_over_user_fixed'] or 0:.1%}", p.get("pairs", "-"), p.get("accepted", "-"),
                     p.get("bugs", "-"), p.get("bugs_with_an_accepted_diff", "-")))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(str(v).rjust(w) for v, w in zip(row, widths)) for row in rows)


def main(repls: int = 40, seed: int = 1, demo_repls: int = 30, demo_seed: int = 0, workers: int = 2,
         records: Path | None = None, baseline: str | None = None) -> dict:
    records = Path(records or os.environ.get("OTLAKE_DEBUGBENCH") or DEBUGBENCH)
    results = {"debugbench": run_dataset("debugbench", repls, seed, workers, records, baseline)}
    if demo_repls:
        results["demo"] = run_dataset("demo", demo_repls, demo_seed, workers, baseline=baseline)
    result = {"machine": machine(), "git": git_rev(), "workers": workers, "debugbench": str(records),
              "datasets": results}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "usermine.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(_table(results | {f"{k} @{v['baseline']['rev']}": v["baseline"] for k, v in results.items()
                            if "baseline" in v}))
    for name, r in results.items():
        print(f"\n{name}: steps " + ", ".join(f"{s} {v['passed']}/{v['reached']}" for s, v in r["steps"].items())
              + f"; no candidate {r['no_candidate']}")
        for key in ("top_rejections", "top_rejections_planted"):
            if key in r:
                print(f"  {key}:")
                for t in r[key][:5]:
                    print(f"  {t['pairs']:5}  {t['reason']}")
    print(f"\nwrote {OUT / 'usermine.json'}")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repls", type=int, default=40, help="DebugBench repls with several bugs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--demo-repls", type=int, default=30, help="repls of the demo's sessions (0: none)")
    ap.add_argument("--demo-seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="warm pyright servers")
    ap.add_argument("--debugbench", type=Path, default=None,
                    help=f"DebugBench's python3_*.json (default $OTLAKE_DEBUGBENCH, else {DEBUGBENCH})")
    ap.add_argument("--baseline", default=None, metavar="REV",
                    help="also run the stages with the code at this git revision (e.g. 42092b5: before "
                         "issue 10), measured by this harness on the same sessions")
    a = ap.parse_args()
    main(a.repls, a.seed, a.demo_repls, a.demo_seed, a.workers, a.debugbench, a.baseline)
