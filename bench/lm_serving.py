"""The local LM server under load: prompt and generation tokens/s, time to first token, requests/s.

A typical repair prompt: the DSPy repair program's own chat messages
(synth.program, ChatAdapter, no few-shot demos) for a DebugBench solution
with an undefined name, numbered, with the first error the meta-LSP
(pyright + ruff) reports on it; a different file per request, so no request
reuses another's prompt beyond the shared instructions. Up to 128 generated
tokens at temperature 0. Requests go over real HTTP to
`python -m local_lm.server`, at 1, 2 and 4 concurrent clients, against
a server with 1 slot and with 2 slots. Figures from the server's own
`timings` (prompt_ms is the time to the first token inside the server) and
the client's wall clock.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from local_lm.launcher import LocalServer, resolve
from synth.schema import Prompt

from .common import save

DEBUGBENCH = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "debugbench"
PORT = 8791


def prompts(n: int) -> list[list[dict]]:
    """The repair program's chat messages for n DebugBench files, each with its first real error."""
    from lsp_runner.pool import LspPool
    from lsp_runner.snapshot import Snapshot
    from synth.lm import load_dspy
    from synth.program import compile_fewshot, prompt_inputs

    records = json.loads((DEBUGBENCH / "python3_undefined_objects.json").read_text())
    snapshots = [Snapshot(f"s{i}", {"main.py": r["buggy_code"]}, ("main.py",)) for i, r in enumerate(records)]
    with LspPool(size=1) as pool:
        results = {r.snapshot_id: r for r in pool.check(snapshots)}
    dspy = load_dspy()
    predict = compile_fewshot([], 0).predict
    adapter = dspy.ChatAdapter()
    out = []
    for snapshot, record in zip(snapshots, records):
        result = results.get(snapshot.id)
        errors = [d for d in (result.diagnostics.get("main.py", ()) if result and result.ok else ())
                  if d.severity == 1]
        if not errors:
            continue
        d = errors[0]
        code = record["buggy_code"]
        prompt = Prompt("main.py", code, d.code, d.message, d.start_line + 1)
        out.append(adapter.format(predict.signature, [], prompt_inputs(prompt)))
        if len(out) == n:
            break
    return out


def ask(messages: list[dict], max_tokens: int = 128) -> dict:
    body = json.dumps({"messages": messages, "max_tokens": max_tokens, "temperature": 0}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/v1/chat/completions", body,
                                     {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        data = json.loads(response.read())
    return {"wall_s": time.perf_counter() - start, **data["usage"], **data["timings"]}


def level(batch: list[list[dict]], clients: int) -> dict:
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(ask, batch))
    wall = time.perf_counter() - start
    med = lambda xs: round(statistics.median(xs), 3)
    return {
        "clients": clients, "requests": len(results), "wall_s": round(wall, 2),
        "requests_per_s": round(len(results) / wall, 3),
        "prompt_tokens_median": med([r["prompt_tokens"] for r in results]),
        "prompt_tok_s_median": med([r["prompt_n"] / (r["prompt_ms"] / 1000) for r in results]),
        "gen_tok_s_median": med([(r["predicted_n"] - 1) / (r["predicted_ms"] / 1000) for r in results
                                 if r["predicted_n"] > 1]),
        "ttft_s_median": med([(r["queue_ms"] + r["prompt_ms"]) / 1000 for r in results]),
        "queue_s_median": med([r["queue_ms"] / 1000 for r in results]),
        "aggregate_gen_tok_s": round(sum(r["completion_tokens"] for r in results) / wall, 2),
    }


def main(model: str = "qwen2.5-coder-0.5b", per_level: int = 6) -> dict:
    record = resolve(model)
    batch = prompts(per_level * 3 + 1)
    results = {"model": record.name, "sha256": record.sha256, "levels": []}
    for slots in (1, 2):
        with LocalServer(record, port=PORT, parallel=slots, ctx=4096):
            ask(batch[-1], 8)  # warm-up: page the weights in
            for i, clients in enumerate((1, 2, 4)):
                got = level(batch[i * per_level:(i + 1) * per_level], clients)
                results["levels"].append({"slots": slots, **got})
                print(json.dumps(results["levels"][-1]), flush=True)
    save("lm_serving", results)
    return results


if __name__ == "__main__":
    main(*sys.argv[1:2])
