"""The DSPy repair program and judge, through a real dspy.LM over HTTP to a scripted chat-completions server."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from synth import linediff
from synth.errors import DiffError
from synth.judge import judge
from synth.lm import LmConfigError, LmSettings
from synth.program import FewShotExample, compile_fewshot, synthesize
from synth.schema import Prompt
from tests.lm_server import (
    Reply,
    ScriptedLM,
    broken_body,
    diff_reply,
    malformed_reply,
    rate_limited,
    server_error,
    slow,
    truncated_reply,
    verdict_reply,
)

TURTLE = Prompt("main.py", "import turtle\n\nscreen = turtle.screen\nscreen.setup(550, 400)\n",
                "pyright[reportAttributeAccessIssue]", '"screen" is not a known member of module "turtle"', 3)
TURTLE_FIX = "-3 screen = turtle.screen\n+3 screen = turtle.Screen()"
UNDEFINED = Prompt("app.py", "total = 0\nprint(totl)\n", "pyright[reportUndefinedVariable]",
                   '"totl" is not defined', 2)
UNDEFINED_FIX = "-2 print(totl)\n+2 print(total)"


def settings(server: ScriptedLM, tmp_path: Path, **kw) -> LmSettings:
    """Fast settings for tests: tiny backoff and timeout; DSPy's cache only where a test asks for it.

    (Building a disk cache costs about half a second here, and the tests that
    use it give it a folder of their own, so no answer leaks between tests.)
    """
    base = {"api_key": "test-key", "backoff_s": 0.01, "timeout_s": 2.0, "num_retries": 2,
            "cache": False, "cache_dir": str(tmp_path / "dspy-cache")}
    return LmSettings("openai/scripted-coder", api_base=server.api_base, **{**base, **kw})


def numbered_prompt(i: int) -> Prompt:
    """A distinct prompt per i, so that neither the script nor the cache mixes them up."""
    return Prompt("m.py", f"value_{i} = {i}\nprint(valu_{i})\n", "pyright[reportUndefinedVariable]",
                  f'"valu_{i}" is not defined', 2)


def test_a_good_answer_gives_the_diff_text_tokens_and_the_hash_of_what_was_sent(tmp_path):
    with ScriptedLM(script=[("turtle", diff_reply(TURTLE_FIX, prompt_tokens=120, completion_tokens=17))]) as lm:
        [answer] = synthesize([("p1", TURTLE)], settings(lm, tmp_path))
    assert answer.error is None
    assert (answer.id, answer.model, answer.text) == ("p1", "openai/scripted-coder", TURTLE_FIX)
    assert linediff.apply(TURTLE.code, linediff.extract(answer.text)) == TURTLE.code.replace(
        "turtle.screen", "turtle.Screen()")
    assert answer.raw.startswith("[[ ## diff ## ]]\n-3 screen") and answer.raw.endswith("[[ ## completed ## ]]")
    assert (answer.prompt_tokens, answer.completion_tokens, answer.attempts) == (120, 17, 1)
    assert not answer.cached and answer.fewshot_ids == ()
    sent = lm.requests[0]["messages"]
    assert answer.prompt_hash == hashlib.sha256(
        json.dumps(sent, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    user = lm.user_messages()[0]
    assert "#main.py\n1 import turtle\n2\n3 screen = turtle.screen" in user
    assert 'pyright[reportAttributeAccessIssue] "screen" is not a known member' in user
    assert "-N text" in sent[0]["content"]  # the instructions of the signature reach the model


def test_answers_come_back_in_input_order_with_their_own_diffs(tmp_path):
    with ScriptedLM(script=[("turtle", diff_reply(TURTLE_FIX)), ("totl", diff_reply(UNDEFINED_FIX))]) as lm:
        answers = synthesize([("b", UNDEFINED), ("a", TURTLE), ("c", UNDEFINED)], settings(lm, tmp_path))
    assert [(a.id, a.text) for a in answers] == [("b", UNDEFINED_FIX), ("a", TURTLE_FIX), ("c", UNDEFINED_FIX)]


def test_fewshot_demos_are_sent_and_their_ids_recorded(tmp_path):
    pool = [FewShotExample("ex-undefined", UNDEFINED, UNDEFINED_FIX),
            FewShotExample("ex-3", numbered_prompt(3), "-2 print(valu_3)\n+2 print(value_3)"),
            FewShotExample("ex-4", numbered_prompt(4), "-2 print(valu_4)\n+2 print(value_4)")]
    with ScriptedLM(default=diff_reply(TURTLE_FIX)) as lm:
        [answer] = synthesize([("p1", TURTLE)], settings(lm, tmp_path), fewshot=pool, k=2)
    assert answer.error is None and len(answer.fewshot_ids) == 2
    assert set(answer.fewshot_ids) <= {"ex-undefined", "ex-3", "ex-4"}
    sent = json.dumps(lm.requests[0]["messages"])
    chosen = {e.id: e for e in pool}
    for example_id in answer.fewshot_ids:  # each chosen demo's code and diff go out; the other's do not
        assert json.dumps(chosen[example_id].diff)[1:-1] in sent
    [left_out] = {"ex-undefined", "ex-3", "ex-4"} - set(answer.fewshot_ids)
    assert json.dumps(chosen[left_out].diff)[1:-1] not in sent
    assert "ex-undefined" not in sent  # ids are ours, never the model's
    assert compile_fewshot(pool, k=2).fewshot_ids == answer.fewshot_ids  # the same demos every time


def test_temperature_and_token_limit_reach_the_server(tmp_path):
    with ScriptedLM(default=diff_reply(TURTLE_FIX)) as lm:
        synthesize([("p1", TURTLE)], settings(lm, tmp_path, temperature=0.4, max_tokens=321))
    body = lm.requests[0]
    assert body["temperature"] == 0.4
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 321
    assert body["model"] == "scripted-coder"


def test_rate_limits_are_retried_with_backoff_until_an_answer_comes(tmp_path):
    script = [("turtle", [rate_limited(retry_after="0.3"), rate_limited(retry_after="0.3"), diff_reply(TURTLE_FIX)])]
    with ScriptedLM(script=script) as lm:
        start = time.monotonic()
        [answer] = synthesize([("p1", TURTLE)], settings(lm, tmp_path, num_retries=3))
        took = time.monotonic() - start
    assert (answer.error, answer.text, answer.attempts, lm.request_count) == (None, TURTLE_FIX, 3, 3)
    assert took >= 0.6 and answer.seconds >= 0.6  # the server's Retry-After beats our 0.01 s backoff


def test_a_persistent_rate_limit_is_reported_not_raised(tmp_path):
    with ScriptedLM(default=rate_limited()) as lm:
        [answer] = synthesize([("p1", TURTLE)], settings(lm, tmp_path, num_retries=2))
    assert (answer.error, answer.text, answer.attempts, lm.request_count) == ("rate_limited", "", 3, 3)
    assert (answer.prompt_tokens, answer.completion_tokens) == (0, 0)


def test_a_slow_answer_past_the_timeout_is_a_timeout_and_a_retry_can_succeed(tmp_path):
    script = [("turtle", slow(diff_reply(TURTLE_FIX), 1.5)),
              ("totl", [slow(diff_reply(UNDEFINED_FIX), 1.5), diff_reply(UNDEFINED_FIX)])]
    with ScriptedLM(script=script) as lm:
        late, retried = synthesize([("late", TURTLE), ("retried", UNDEFINED)],
                                   settings(lm, tmp_path, timeout_s=0.3, num_retries=1))
    assert (late.error, late.text, late.attempts) == ("timeout", "", 2)
    assert (retried.error, retried.text, retried.attempts) == (None, UNDEFINED_FIX, 2)
    # the client gave up on each attempt (a timeout, not the slow answer) after waiting at least its timeout
    assert late.seconds >= 2 * 0.3


def test_a_server_error_is_retried_then_reported(tmp_path):
    script = [("turtle", server_error()), ("totl", [server_error(), diff_reply(UNDEFINED_FIX)])]
    with ScriptedLM(script=script) as lm:
        failed, recovered = synthesize([("f", TURTLE), ("r", UNDEFINED)], settings(lm, tmp_path, num_retries=1))
    assert (failed.error, failed.attempts) == ("server_error", 2)
    assert (recovered.error, recovered.text, recovered.attempts) == (None, UNDEFINED_FIX, 2)


def test_a_broken_body_or_a_refused_key_is_reported_at_once_without_retries(tmp_path):
    script = [("turtle", broken_body()), ("totl", Reply(status=401))]
    with ScriptedLM(script=script) as lm:
        broken, refused = synthesize([("b", TURTLE), ("r", UNDEFINED)], settings(lm, tmp_path, num_retries=3))
    assert broken.error.startswith("bad_response: ") and "not JSON" in broken.error
    assert refused.error.startswith("auth: ")
    assert (broken.attempts, refused.attempts, lm.request_count) == (1, 1, 2)


def test_a_malformed_answer_is_unparseable_with_its_raw_text_after_the_json_fallback(tmp_path):
    garbage = "I think you should capitalize Screen. <diff>\n-3 screen = turtle.screen\n+3 screen = turtle.Screen()\n</diff>"
    with ScriptedLM(default=malformed_reply(garbage)) as lm:
        [answer] = synthesize([("p1", TURTLE)], settings(lm, tmp_path))
    assert (answer.error, answer.text, answer.raw) == ("unparseable", garbage, garbage)
    assert linediff.extract(answer.text) == TURTLE_FIX  # the caller may still find a diff in it
    # DSPy's ChatAdapter asks once more through its JSONAdapter; both answers are billed
    assert lm.request_count == 2 and "JSON object" in lm.user_messages()[1]
    assert (answer.prompt_tokens, answer.completion_tokens, answer.attempts) == (22, 14, 1)


def test_without_the_json_fallback_a_malformed_answer_costs_one_request(tmp_path):
    with ScriptedLM(default=malformed_reply("no idea")) as lm:
        [answer] = synthesize([("p1", TURTLE)], settings(lm, tmp_path, json_fallback=False))
    assert (answer.error, answer.text, lm.request_count) == ("unparseable", "no idea", 1)


def test_a_truncated_answer_keeps_its_partial_diff_but_is_an_error(tmp_path):
    with ScriptedLM(default=truncated_reply(TURTLE_FIX, keep=30)) as lm:
        [answer] = synthesize([("p1", TURTLE)], settings(lm, tmp_path, max_tokens=12))
    assert answer.error == "truncated"
    assert answer.text == TURTLE_FIX[:30].rstrip() and answer.text.startswith("-3 screen = turtle.screen\n+3")


def test_an_answer_cut_before_its_diff_field_is_truncated_with_the_raw_text(tmp_path):
    cut = Reply(text="[[ ## di", finish_reason="length")
    with ScriptedLM(default=cut) as lm:
        [answer] = synthesize([("p1", TURTLE)], settings(lm, tmp_path, json_fallback=False))
    assert (answer.error, answer.text, answer.raw) == ("truncated", "[[ ## di", "[[ ## di")


def test_a_wrong_diff_passes_through_for_the_caller_to_reject(tmp_path):
    wrong = "-3 screen = turtle.screan\n+3 screen = turtle.Screen()"
    with ScriptedLM(default=diff_reply(wrong)) as lm:
        [answer] = synthesize([("p1", TURTLE)], settings(lm, tmp_path))
    assert (answer.error, answer.text) == (None, wrong)
    with pytest.raises(DiffError, match="text_mismatch"):
        linediff.apply(TURTLE.code, answer.text)


def test_an_answer_without_usage_counts_zero_tokens(tmp_path):
    reply = Reply(text=diff_reply(TURTLE_FIX).text, prompt_tokens=None)
    with ScriptedLM(default=reply) as lm:
        [answer] = synthesize([("p1", TURTLE)], settings(lm, tmp_path))
    assert (answer.error, answer.text, answer.prompt_tokens, answer.completion_tokens) == (None, TURTLE_FIX, 0, 0)
    assert not answer.cached


def test_the_cache_answers_a_repeated_call_without_a_request(tmp_path):
    with ScriptedLM(default=diff_reply(TURTLE_FIX)) as lm:
        [first] = synthesize([("p1", TURTLE)], settings(lm, tmp_path, cache=True))
        [again] = synthesize([("p1", TURTLE)], settings(lm, tmp_path, cache=True))
        assert lm.request_count == 1
        assert (again.text, again.prompt_hash, again.cached) == (first.text, first.prompt_hash, True)
        assert (again.prompt_tokens, again.completion_tokens) == (0, 0)  # nothing was billed
        [uncached] = synthesize([("p1", TURTLE)], settings(lm, tmp_path, cache=False))
        assert lm.request_count == 2 and not uncached.cached
    assert any((tmp_path / "dspy-cache").iterdir())  # DSPy's disk cache lives where we said


def test_failures_are_not_cached(tmp_path):
    with ScriptedLM(default=[rate_limited(), diff_reply(TURTLE_FIX)]) as lm:
        [failed] = synthesize([("p1", TURTLE)], settings(lm, tmp_path, num_retries=0, cache=True))
        [later] = synthesize([("p1", TURTLE)], settings(lm, tmp_path, num_retries=0, cache=True))
    assert (failed.error, later.error, later.text, lm.request_count) == ("rate_limited", None, TURTLE_FIX, 2)


def test_concurrency_bounds_the_requests_in_flight(tmp_path):
    prompts = [(f"p{i}", numbered_prompt(i)) for i in range(7)]
    with ScriptedLM(default=slow(diff_reply("-1 x"), 0.5)) as lm:
        answers = synthesize(prompts, settings(lm, tmp_path, concurrency=3))
    assert [a.id for a in answers] == [f"p{i}" for i in range(7)]
    assert all(a.error is None for a in answers)
    # never more than asked; more than one at once (each answer takes 0.5 s, so a second request arrives
    # while the first waits unless the client serializes). Exactly 3 depends on how the machine schedules.
    assert lm.request_count == 7 and 2 <= lm.max_in_flight <= 3


def test_the_litellm_engine_gets_the_same_answers_retries_and_timeouts(tmp_path):
    # DSPy sends what its native client cannot carry through LiteLLM, which raises its own exceptions
    script = [("turtle", diff_reply(TURTLE_FIX, prompt_tokens=40)),
              ("totl", [rate_limited(), rate_limited(), diff_reply(UNDEFINED_FIX)]),
              ("valu_1", slow(diff_reply("-1 x"), 1.5))]
    with ScriptedLM(script=script) as lm:
        good, limited, late = synthesize([("g", TURTLE), ("l", UNDEFINED), ("t", numbered_prompt(1))],
                                         settings(lm, tmp_path, engine="litellm", timeout_s=0.5, num_retries=2))
    assert (good.error, good.text, good.prompt_tokens, good.completion_tokens) == (None, TURTLE_FIX, 40, 7)
    assert (limited.error, limited.text, limited.attempts) == (None, UNDEFINED_FIX, 3)
    assert (late.error, late.attempts) == ("timeout", 3)
    assert lm.requests[0].get("max_tokens", lm.requests[0].get("max_completion_tokens")) == 1024


def test_the_judge_accepts_and_rejects_as_the_model_says_and_copes_with_garbage(tmp_path):
    fixed = TURTLE.code.replace("turtle.screen", "turtle.Screen()")
    script = [("turtle.Screen()", verdict_reply(True, "Screen() is the factory the code meant.")),
              ("print(0)", verdict_reply(False, "It deletes the print instead of fixing the name.")),
              ("print(1)", malformed_reply("hmm, hard to say")),
              ("print(2)", verdict_reply(True, "fine", finish_reason="length"))]
    items = [("good", TURTLE, TURTLE_FIX, fixed)] + [
        (f"bad{i}", UNDEFINED, f"-2 print(totl)\n+2 print({i})", f"total = 0\nprint({i})\n") for i in range(3)]
    with ScriptedLM(script=script, default=rate_limited()) as lm:
        verdicts = judge(items + [("limited", TURTLE, "-1 import turtle", "\n")], settings(lm, tmp_path))
    by_id = {v.id: v for v in verdicts}
    assert [v.id for v in verdicts] == ["good", "bad0", "bad1", "bad2", "limited"]
    assert (by_id["good"].accepted, by_id["good"].reason, by_id["good"].error) == (
        True, "Screen() is the factory the code meant.", None)
    assert (by_id["bad0"].accepted, by_id["bad0"].error) == (False, None)
    assert by_id["bad0"].reason.startswith("It deletes the print")
    assert (by_id["bad1"].accepted, by_id["bad1"].error, by_id["bad1"].raw) == (False, "unparseable", "hmm, hard to say")
    assert (by_id["bad2"].accepted, by_id["bad2"].error) == (False, "truncated")
    assert (by_id["limited"].accepted, by_id["limited"].error, by_id["limited"].attempts) == (False, "rate_limited", 3)
    assert by_id["good"].prompt_tokens == 11
    [sent] = [m for m in lm.user_messages() if "#main.py" in m and "turtle.Screen()" in m]  # any order
    assert "<lsp_error>" in sent and "#main.py\n1 import turtle" in sent and "3 screen = turtle.Screen()" in sent


def test_a_judge_answer_that_is_not_a_bool_is_unparseable(tmp_path):
    reply = Reply(text="[[ ## reasoning ## ]]\nhmm\n\n[[ ## accepted ## ]]\nperhaps\n\n"
                       "[[ ## reason ## ]]\nunsure\n\n[[ ## completed ## ]]")
    with ScriptedLM(default=reply) as lm:
        [verdict] = judge([("v", TURTLE, TURTLE_FIX, TURTLE.code)], settings(lm, tmp_path, json_fallback=False))
    assert (verdict.accepted, verdict.error) == (False, "unparseable")


def test_settings_come_from_the_environment_and_refuse_nonsense():
    env = {"OTLAKE_LM_MODEL": "openai/deepseek-coder", "OPENAI_API_BASE": "http://127.0.0.1:8000/v1",
           "OPENAI_API_KEY": "sk-fallback", "OTLAKE_LM_API_KEY": "sk-ours"}
    s = LmSettings.from_env(env, temperature=0.2)
    assert (s.model, s.api_base, s.api_key, s.temperature) == (
        "openai/deepseek-coder", "http://127.0.0.1:8000/v1", "sk-ours", 0.2)
    assert "sk-ours" not in repr(s)
    with pytest.raises(LmConfigError, match="OTLAKE_LM_MODEL"):
        LmSettings.from_env({})
    with pytest.raises(LmConfigError, match="concurrency"):
        LmSettings("openai/x", concurrency=0)


def test_the_scripted_server_also_streams(tmp_path):
    with ScriptedLM(default=diff_reply(TURTLE_FIX)) as lm:
        body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        request = urllib.request.Request(f"{lm.api_base}/chat/completions", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            events = [line[6:] for line in response.read().decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == \
        diff_reply(TURTLE_FIX).text
    assert chunks[-1]["usage"]["completion_tokens"] == 7


def test_importing_the_programs_does_not_import_dspy():
    code = ("import sys, synth.program, synth.judge, synth.lm; "
            "print(sorted(m for m in ('dspy', 'litellm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "[]"
