"""LM synthesis with the real local model: acceptance per verification step, few-shot, the judge, what goes wrong.

Two data sets, as in bench.usermine (the same cached event logs under
bench-data/usermine/): `demo` (the sessions `otlake demo` makes) and
`debugbench` (DebugBench solutions with 2-4 planted bugs each). Each is
ingested into a fresh warehouse, paired, and given its user-mined diffs
(`synth --source user`). Then a fixed sample of --pairs pairs (round robin
over the rules, most common first, in a hash order of pair ids; the same
sample for every setting) goes to `synth --source lm` against the local
server, once per few-shot count (0, 3, 8 verified user fixes), each in its
own copy of the warehouse. Per data set and setting:

  steps        synth.verify.count_steps over the LM candidates, beside the user-mined diffs of the
               same sample (reached, passed, failed by reason)
  accepted     accepted / sample, and per rule
  errors       failures of the LM diffs by category (the step that failed and the reason's group),
               with an example each: the diagnostic, the error line, the model's raw answer
  cost         seconds per pair, prompt and completion tokens

The judge: on the 3-shot copy, every candidate (LM or user-mined, of the
sample) whose diff applied is judged by the same model; agreement with the
language servers' verdict (target gone and no new error), a confusion
matrix and Cohen's kappa.

`python -m bench.lm_synth --pairs 30`; results in bench-data/lm_synth.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson

from local_lm.launcher import LocalServer, resolve
from otlake.dataset_cli import DEBUGBENCH
from otlake.stages import PairsOptions, SynthOptions, build_pairs, ingest_files, run_synth
from synth.lm import LmSettings
from synth.schema import Prompt
from synth.verify import STEPS, count_steps, reason_group
from warehouse.store import Warehouse

from .common import OUT, save
from .usermine import _sessions

PORT = 8792
LSP_STEPS = [s for s in STEPS if s != "judge"]


def sample_pairs(con, n: int) -> list[str]:
    """n pair ids: round robin over rules (most pairs first), each rule's pairs in md5 order."""
    rows = con.execute("""SELECT p.pair_id, p.code FROM pairs p JOIN repls r USING (repl_id)
                          WHERE NOT r.is_private""").fetchall()
    by_rule: dict[str, list[str]] = defaultdict(list)
    for pid, code in rows:
        by_rule[code].append(pid)
    queues = [sorted(ids, key=lambda i: hashlib.md5(i.encode()).hexdigest())
              for _, ids in sorted(by_rule.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    out: list[str] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def base_warehouse(name: str, repls: int, seed: int, workers: int) -> Path:
    """The data set's warehouse with pairs and user-mined diffs (built once, then reused)."""
    log, _ = _sessions(name, repls, seed, workers, DEBUGBENCH)
    home = OUT / "lm_synth" / f"{name}-{repls}-{seed}"
    if (home / "done").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    with Warehouse(home) as wh:
        ingest_files(wh, [log])
        build_pairs(wh, PairsOptions(workers=workers))
        run_synth(wh, SynthOptions(sources=("user",), workers=workers))
    (home / "done").write_text("")
    return home


def diff_rows(con, ids: list[str], source: str) -> list[dict]:
    cur = con.execute(
        """SELECT p.pair_id, p.code, p.message, p.error_line, p.path, p.content, p.start_line, d.diff, d.fixed,
                  d.accepted, d.failed_step, d.reason, d.verification, d.raw, d.prompt_tokens, d.completion_tokens
           FROM diffs d JOIN pairs p USING (pair_id)
           WHERE d.source = ? AND p.pair_id IN (SELECT unnest(?::VARCHAR[]))""", [source, ids])
    names = [c[0] for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


class _V:
    """A stored verification read back (steps as synth.verify.count_steps reads them)."""

    def __init__(self, steps: list[dict]):
        self.steps = [type("S", (), {"step": s["step"], "ok": s["ok"], "reason": s.get("reason", "")})
                      for s in steps]


def steps_of(rows: list[dict]) -> dict:
    return count_steps([_V(orjson.loads(r["verification"])) for r in rows if r["verification"]])


def categories(rows: list[dict]) -> list[dict]:
    """LM failures by (failed step, reason group), most common first, one example each."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if not r["accepted"]:
            groups[(r["failed_step"], reason_group(r["reason"] or ""))].append(r)
    out = []
    for (step, reason), members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        ex = members[0]
        out.append({"step": step, "reason": reason, "n": len(members), "example": {
            "diagnostic": f"{ex['code']} {ex['message']}", "error_line": ex["error_line"],
            "answer": (ex["raw"] or "")[:400], "reason": (ex["reason"] or "")[:200]}})
    return out


def lm_run(base: Path, k: int, ids: list[str], api_base: str, model: str) -> dict:
    home = base.parent / f"{base.name}-lm-{k}shot"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(base, home)
    settings = LmSettings(f"openai/{model}", api_base=api_base, api_key="local", max_tokens=256, timeout_s=300,
                          concurrency=1, cache=False)
    with Warehouse(home) as wh:
        started = time.perf_counter()
        report = run_synth(wh, SynthOptions(sources=("lm",), lm=settings, fewshot=k, pair_ids=frozenset(ids)))
        seconds = time.perf_counter() - started
        rows = diff_rows(wh.con, ids, "lm")
    lm = report.by_source["lm"]
    by_rule: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        by_rule[r["code"]]["pairs"] += 1
        by_rule[r["code"]]["accepted"] += bool(r["accepted"])
    return {"fewshot": k, "pairs": lm.pairs, "accepted": lm.accepted, "rows": len(rows),
            "no_candidate": dict(lm.no_candidate), "deferred": dict(lm.deferred),
            "steps": steps_of(rows), "by_rule": {c: dict(v) for c, v in sorted(by_rule.items())},
            "errors": categories(rows), "seconds": round(seconds, 1),
            "seconds_per_pair": round(seconds / max(lm.pairs, 1), 2),
            "prompt_tokens": lm.prompt_tokens, "completion_tokens": lm.completion_tokens, "home": str(home)}


def judge_agreement(home: Path, ids: list[str], api_base: str, model: str) -> dict:
    """The judge on every applied candidate of the sample (LM and user), against the LSP verdict."""
    from synth.judge import judge

    with Warehouse(home) as wh:
        rows = diff_rows(wh.con, ids, "lm") + diff_rows(wh.con, ids, "user")
    items, truth = [], []
    for i, r in enumerate(rows):
        steps = {s["step"]: s["ok"] for s in orjson.loads(r["verification"] or "[]")}
        if not steps.get("applies") or r["fixed"] is None or "target_gone" not in steps:
            continue  # the judge reads a fixed file: only candidates that applied and were re-linted
        prompt = Prompt(r["path"], r["content"], r["code"], r["message"], r["start_line"] + 1)
        items.append((str(i), prompt, r["diff"], r["fixed"]))
        truth.append(bool(steps.get("target_gone") and steps.get("no_new_errors")))
    settings = LmSettings(f"openai/{model}", api_base=api_base, api_key="local", max_tokens=384, timeout_s=300,
                          concurrency=1, cache=False)
    started = time.perf_counter()
    verdicts = judge(items, settings)
    seconds = time.perf_counter() - started
    matrix = Counter()
    errors = Counter()
    for verdict, lsp in zip(verdicts, truth):
        if verdict.error:
            errors[verdict.error.split(":")[0]] += 1
        matrix[(lsp, verdict.accepted)] += 1
    n = len(verdicts)
    agree = matrix[(True, True)] + matrix[(False, False)]
    p_yes = (sum(truth) / n) * (sum(v.accepted for v in verdicts) / n) if n else 0
    p_no = (1 - sum(truth) / n) * (1 - sum(v.accepted for v in verdicts) / n) if n else 0
    expected = p_yes + p_no
    kappa = (agree / n - expected) / (1 - expected) if n and expected < 1 else None
    return {"judged": n, "agreement": round(agree / n, 3) if n else None,
            "kappa": round(kappa, 3) if kappa is not None else None,
            "lsp_yes_judge_yes": matrix[(True, True)], "lsp_yes_judge_no": matrix[(True, False)],
            "lsp_no_judge_yes": matrix[(False, True)], "lsp_no_judge_no": matrix[(False, False)],
            "judge_errors": dict(errors), "seconds_per_item": round(seconds / max(n, 1), 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.lm_synth")
    parser.add_argument("--pairs", type=int, default=30, help="pairs per data set")
    parser.add_argument("--fewshot", default="0,3,8")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--sets", default="demo,debugbench")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-judge", action="store_true")
    args = parser.parse_args(argv)
    record = resolve(args.model)
    shots = [int(k) for k in args.fewshot.split(",")]
    sizes = {"demo": (30, 0), "debugbench": (40, 1)}  # bench.usermine's defaults: its cached logs
    results: dict = {"model": record.name, "sha256": record.sha256, "pairs_per_set": args.pairs, "sets": {}}
    bases = {name: base_warehouse(name, *sizes[name], args.workers) for name in args.sets.split(",")}
    with LocalServer(record, port=PORT, parallel=1, ctx=16384, startup_s=300) as server:
        for name, base in bases.items():
            with Warehouse(base) as wh:
                ids = sample_pairs(wh.con, args.pairs)
                user = diff_rows(wh.con, ids, "user")
            out = {"sample": len(ids), "user": {"diffs": len(user), "accepted": sum(bool(r["accepted"]) for r in user),
                                                "steps": steps_of(user)}, "lm": []}
            for k in shots:
                got = lm_run(base, k, ids, server.api_base, record.name)
                out["lm"].append(got)
                print(json.dumps({"set": name, **{x: got[x] for x in ("fewshot", "pairs", "accepted",
                                                                      "seconds_per_pair")}}), flush=True)
            if not args.no_judge:
                home = Path(next((r["home"] for r in out["lm"] if r["fewshot"] == 3), out["lm"][0]["home"]))
                out["judge"] = judge_agreement(home, ids, server.api_base, record.name)
                print(json.dumps({"set": name, "judge": out["judge"]}), flush=True)
            results["sets"][name] = out
    save("lm_synth", results)
    return results


if __name__ == "__main__":
    main()
