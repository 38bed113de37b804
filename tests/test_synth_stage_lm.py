"""`synth --source lm` end to end: a real dspy.LM over HTTP to the scripted server, real pyright and ruff."""

from __future__ import annotations

import orjson
import pytest

from otlake.stages import PairsOptions, SynthOptions, build_pairs, ingest_events, run_synth
from synth.lm import LmSettings
from tests.lm_server import ScriptedLM, diff_reply, malformed_reply, verdict_reply
from warehouse.store import Warehouse

from .test_synth_user import _session

RIGHT = "-3 print(os.pth)\n+3 print(os.path)"
WRONG_TEXT = "-4 print(os.SEPP)\n+4 print(os.sep)"  # its `-` line is not what line 4 says
SCRIPT = [
    ("## fixed_code ##", verdict_reply(False, "renames the attribute but the program meant something else")),
    ('"pth" is not', diff_reply(RIGHT, prompt_tokens=200, completion_tokens=20)),
    ('"sepp" is not', diff_reply(WRONG_TEXT)),
    ('"nme" is not', malformed_reply("I think you should rename it.")),
]


def _settings(server: ScriptedLM, tmp_path, model: str) -> LmSettings:
    return LmSettings(model, api_base=server.api_base, api_key="k", backoff_s=0.01, timeout_s=5.0,
                      num_retries=1, cache=False, cache_dir=str(tmp_path / "dspy-cache"))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    home = tmp_path_factory.mktemp("synth-lm") / "wh"
    with Warehouse(home) as wh:
        ingest_events(wh, _session())
        build_pairs(wh, PairsOptions())
        run_synth(wh, SynthOptions())  # user fixes first: the verified one becomes a few-shot example
    return home


def test_lm_answers_go_through_the_same_chain_with_their_provenance(warehouse, tmp_path):
    with ScriptedLM(script=SCRIPT) as server, Warehouse(warehouse) as wh:
        settings = _settings(server, tmp_path, "openai/scripted-coder")
        report = run_synth(wh, SynthOptions(sources=("lm",), lm=settings, batch_pairs=1))
        rows = wh.con.execute(
            """SELECT p.error_line, d.accepted, d.failed_step, d.reason, d.diff, d.prompt_hash, d.fewshot_ids,
                      d.prompt_tokens, d.completion_tokens, d.raw, d.verification
               FROM diffs d JOIN pairs p USING (pair_id) WHERE d.source = 'lm' ORDER BY p.start_line""").fetchall()
        user_fix = wh.con.execute("SELECT pair_id FROM diffs WHERE source = 'user' AND accepted").fetchall()
    lm = report.by_source["lm"]
    assert (lm.pairs, lm.accepted, len(lm.verifications)) == (3, 1, 3)
    right, wrong, chatty = rows
    assert right[1:5] == (True, None, None, RIGHT)
    assert (right[7], right[8]) == (200, 20) and len(right[5]) == 64
    assert [s["step"] for s in orjson.loads(right[10])] == [
        "extracted", "well_formed", "applies", "changes", "parses", "target_gone", "no_new_errors"]
    assert wrong[1:3] == (False, "applies") and wrong[3].startswith("text_mismatch")
    assert chatty[1:3] == (False, "extracted") and "rename it" in chatty[9]
    # the user's verified fix is shown to the LM for the other pairs, never for its own
    assert orjson.loads(right[6]) == [] and orjson.loads(wrong[6]) == [user_fix[0][0]]
    shown = {name: ["print(os.path)" in str(body["messages"]) for body in server.requests
                    if f'"{name}" is not' in str(body["messages"][-1])] for name in ("pth", "sepp")}
    assert shown == {"pth": [False], "sepp": [True]}  # the demo went out with the other pair's request only


def test_the_judge_can_refuse_what_the_language_servers_accepted(warehouse, tmp_path):
    with ScriptedLM(script=SCRIPT) as server, Warehouse(warehouse) as wh:
        settings = _settings(server, tmp_path, "openai/scripted-judged")
        report = run_synth(wh, SynthOptions(sources=("lm",), lm=settings, judge=True))
        (step, reason), = wh.con.execute(
            """SELECT failed_step, reason FROM diffs WHERE model = 'openai/scripted-judged'
               AND verification::VARCHAR LIKE '%no_new_errors%'""").fetchall()
    assert report.by_source["lm"].accepted == 0
    assert step == "judge" and "meant something else" in reason
    assert sum("## fixed_code ##" in m for m in server.user_messages()) == 1  # only the one that got that far
