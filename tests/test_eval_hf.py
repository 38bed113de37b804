"""A local Hugging Face checkpoint judged by `otlake eval`: a tiny random Llama made here, generating with transformers."""

from __future__ import annotations

import json

import pytest
import torch  # the hf dependency group (make test installs it)
import transformers
from click.testing import CliRunner

from eval.items import EvalItem
from eval.models import HfModel, Sampling, resolve_model
from lsp_runner.diagnostic import Diagnostic
from otlake.cli import main

CODE = "def add(a, b):\n    return a + c\n"
FIXED = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 2-layer Llama with random weights and a word-level tokenizer over the prompt's own words."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = tmp_path_factory.mktemp("ckpt")
    words = sorted({"<code>", "</code>", "<lsp_error>", "</lsp_error>", "<error_line>", "</error_line>", "<diff>", "</diff>", "#main.py", "def", "add", "(", "a", ",", "b", ")", ":", "return", "+", "c", "-", "1", "2", "3", "ruff", "[", "F821", "]", "Undefined", "name", "`", "pyright", "reportUndefinedVariable", "is", "not", "defined", '"', "user", "assistant"})
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                                eos_token="</s>", pad_token="</s>")
    fast.chat_template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}assistant "
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                      max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def item() -> EvalItem:
    target = Diagnostic("main.py", "ruff[F821]", 1, 15, 1, 16, 1, "Undefined name `c`", source="ruff")
    return EvalItem("add", "jsonl", "", "", CODE, FIXED, target=target)


def test_a_checkpoint_answers_every_sample_reproducibly_for_a_seed(checkpoint):
    model = resolve_model(str(checkpoint))
    assert isinstance(model, HfModel) and model.name == f"hf:{checkpoint.name}"
    sampling = Sampling(max_tokens=12, seed=3)
    first = model.answer([item()], 3, sampling)
    again = model.answer([item()], 3, sampling)
    assert len(first) == 1 and len(first[0]) == 3
    assert [a.text for a in first[0]] == [a.text for a in again[0]]  # a seed fixes every sample
    assert len({a.text for a in first[0]}) > 1  # samples differ from one another (temperature 0.1 on random logits)
    for a in first[0]:
        assert a.error is None and 0 < a.completion_tokens <= 12 and a.prompt_tokens > 20 and len(a.prompt_hash) == 64
    assert model.settings()["kind"] == "hf" and len(model.settings()["config_sha256"]) == 64


def test_otlake_eval_runs_a_checkpoint_folder_as_a_model(checkpoint, tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"id": "add", "buggy_code": CODE, "fixed_code": FIXED, "tests": "assert add(2, 3) == 5"})
                    + "\n")
    result = CliRunner().invoke(main, ["eval", "run", "--bench", "jsonl", "--data", str(data), "--model",
                                       str(checkpoint), "--max-tokens", "8", "--out", str(tmp_path / "run"),
                                       "--home", str(tmp_path / "home"), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["model"] == f"hf:{checkpoint.name}" and got["items"] == 1
    row = json.loads((tmp_path / "run" / "items.jsonl").read_text().splitlines()[0])
    # random weights write no diff: the answer is scored, not an error, and fails where it must
    assert row["error"] is None and row["completion_tokens"] > 0 and row["applies"] is False
    assert row["functional"] is False and row["test_detail"]


def test_a_folder_without_a_config_is_not_a_checkpoint(tmp_path):
    from eval.errors import EvalError

    with pytest.raises(EvalError, match="no config.json"):
        resolve_model(str(tmp_path))
