"""Dataset export for LLM Foundry: train.jsonl, eval.jsonl and README.md (the dataset card), byte for byte.

Each JSONL line is exactly `{"prompt": ..., "response": ...}`: LLM Foundry's
finetuning loader takes a local JSONL file whose examples have those two keys
and no others (`hf_name: json` with `hf_kwargs.data_files`), and reads the
prompt schema of DESIGN.md as plain text. The card starts with the YAML header
Hugging Face `datasets` reads from a folder's README.md (`configs` naming the
splits written), so `load_dataset(FOLDER)`, and LLM Foundry's `hf_name: FOLDER`,
find the files too (leave `safe_load` off: it refuses a folder with a README.md
in it). Only non-empty splits are written: `load_dataset` refuses a split whose
file holds no example, so the caller leaves an empty one out and says why in
`Card.notes`.

Nothing in the files depends on the clock, the output path or the order of a
dict: the same inputs give the same bytes (`write_dataset` returns each file's
sha256).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from events.errors import ConfigError
from synth.hygiene import REASONS

SPLITS = ("train", "eval")
FILES = ("train.jsonl", "eval.jsonl", "README.md")
BAR = 40  # characters of the longest histogram bar


@dataclass
class Card:
    """What a dataset card says; every mapping is printed in sorted order."""

    name: str
    train: int
    eval: int
    params: dict
    steps: list[tuple[str, int, int, dict]]      # step, examples in, examples out, dropped by reason
    rules: dict[str, tuple[int, int]]            # rule -> (train, eval)
    sources: dict[str, tuple[int, int]]          # 'user' / 'lm:model' -> (train, eval)
    anonymized_examples: int = 0
    anonymized_values: dict[str, int] = field(default_factory=dict)
    rerendered: int = 0
    eval_sets: list[dict] = field(default_factory=list)   # name, files, records, sha256
    index: dict = field(default_factory=dict)             # ngram, ngrams, boilerplate, texts, threshold
    lineage: list[tuple[str, str, int]] = field(default_factory=list)  # run id, stage, examples
    sha256: dict[str, str] = field(default_factory=dict)  # train.jsonl / eval.jsonl -> digest
    notes: list[str] = field(default_factory=list)
    splits: tuple[str, ...] = SPLITS                      # the splits whose files are written
    example: tuple[str, str, str] | None = None           # where it is (file:line), prompt excerpt, response


def jsonl(lines: list[bytes]) -> bytes:
    """JSON lines joined, each ending in a newline."""
    return b"".join(line + b"\n" for line in lines)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_dataset(folder: Path, splits: dict[str, list[bytes]], card: Card) -> dict[str, str]:
    """Write SPLIT.jsonl for each split given, and README.md, into folder (which must exist).

    Returns {file name: sha256}; the card lists exactly the splits given.
    """
    unknown = sorted(set(splits) - set(SPLITS))
    assert not unknown, f"splits are {SPLITS}, not {unknown}"
    data = {f"{name}.jsonl": jsonl(splits[name]) for name in SPLITS if name in splits}
    card.splits = tuple(name for name in SPLITS if name in splits)
    card.sha256 = {name: sha256(blob) for name, blob in data.items()}
    data["README.md"] = render_card(card).encode()
    for name, blob in data.items():
        (folder / name).write_bytes(blob)
    return {name: sha256(blob) for name, blob in data.items()}


def staging_folder(out: Path, overwrite: bool) -> Path:
    """A fresh folder beside out to write into (proving out can be written); ConfigError when it cannot be.

    out must be absent, empty, or (with overwrite) a dataset folder: holding
    only train.jsonl, eval.jsonl and README.md, so --overwrite never deletes
    anything else.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file is in the way")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"--out {out} is not empty: pass --overwrite to replace the dataset there, "
                              "or choose another folder")
        others = sorted(p.name for p in out.iterdir() if p.name not in FILES)
        if others:
            raise ConfigError(f"--out {out} holds other files ({', '.join(others[:5])}): refusing to replace it")
    _remove_dead_staging(out)
    # its name says which process writes it (host, pid), so a later build can tell one whose process died
    staging = out.parent / f".{out.name}.tmp-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return staging


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"


def _remove_dead_staging(out: Path) -> None:
    """Staging folders beside out that a build on this host left when its process died (SIGKILL, a crash):
    gone. One of a live process, of another host, or named otherwise is left alone."""
    if not out.parent.is_dir():
        return
    for folder in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
        parts = folder.name.rsplit("-", 3)  # .NAME.tmp, host, pid, hex
        if len(parts) != 4 or parts[1] != _host() or not parts[2].isdigit() or not folder.is_dir():
            continue
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (PermissionError, OverflowError):  # another user's process (alive), or not a pid
            pass


def move_into_place(staging: Path, out: Path) -> Path | None:
    """Rename staging to out; an existing out is renamed aside first and returned, for the caller to delete."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
    try:
        staging.rename(out)
    except OSError as e:
        if old is not None:
            old.rename(out)
        raise ConfigError(f"--out {out}: cannot move the dataset into place ({e.strerror or e})") from None
    return old


def render_card(c: Card) -> str:
    """The dataset card as Markdown, with the Hugging Face `configs` header."""
    total = c.train + c.eval
    counts = {"train": c.train, "eval": c.eval}
    out = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in c.splits:
        out += [f"  - split: {split}", f"    path: {split}.jsonl"]
    out += [
        "---",
        f"# {c.name}",
        "",
        (f"Code-repair examples built by `otlake dataset build`: {total:,} examples, {c.train:,} for training "
         f"and {c.eval:,} for evaluation. Each is a (code, diagnostic) pair from a replayed IDE session and a "
         "verified numbered line diff that fixes it."),
        "",
        "## Files",
        "",
        "| file | examples | sha256 |",
        "| --- | --- | --- |",
        *[f"| {s}.jsonl | {counts[s]:,} | `{c.sha256.get(f'{s}.jsonl', '')}` |" for s in c.splits],
        *[f"| {s}.jsonl | 0 | not written: the split is empty (see Notes) |" for s in SPLITS if s not in c.splits],
        "",
        ("One JSON object a line, `{\"prompt\": ..., \"response\": ...}`. The prompt is `<code>` (`#path`, "
         "then the file with 1-based line numbers), `<lsp_error>` (`rule message`) and `<error_line>`; the "
         "response is `<diff>`, the numbered line diff (`-N text` removes line N, `+N text` adds line N of the "
         "new file), `</diff>`."),
        "",
        *_how_to_load(c.splits),
        *_example(c.example),
        "## Counts at each step",
        "",
        "| step | in | out | dropped |",
        "| --- | --- | --- | --- |",
    ]
    for step, n_in, n_out, dropped in c.steps:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(dropped.items()) if n) or "-"
        out.append(f"| {step} | {n_in:,} | {n_out:,} | {reasons} |")
    out += ["", "## Dropped, by reason", ""]
    dropped = {r: n for _, _, _, d in c.steps for r, n in d.items() if n}
    if dropped:
        out += ["| reason | examples | what it means |", "| --- | --- | --- |"]
        out += [f"| {r} | {n:,} | {REASONS.get(r, '')} |" for r, n in sorted(dropped.items())]
    else:
        out.append("Nothing was dropped.")
    out += ["", "## Anonymization", "",
            f"{c.anonymized_examples:,} example{'' if c.anonymized_examples == 1 else 's'} had values replaced by "
            "placeholders of the same kind "
            f"(one mapping per example, for code, fixed code, diff and message)"
            + (f"; in {c.rerendered:,} of them the diff was rendered again from the anonymized files."
               if c.rerendered else ".")]
    if c.anonymized_values:
        out += ["", "| kind | values replaced |", "| --- | --- |"]
        out += [f"| {k} | {n:,} |" for k, n in sorted(c.anonymized_values.items())]
    out += ["", "## Rules", "", "| rule | train | eval | |", "| --- | --- | --- | --- |"]
    out += _histogram(c.rules)
    out += ["", "## Sources", "", "| source | train | eval | |", "| --- | --- | --- | --- |"]
    out += _histogram(c.sources)
    out += ["", "## Decontamination", ""]
    if c.eval_sets:
        out += ["| evaluation set | files | records | sha256 |", "| --- | --- | --- | --- |"]
        out += [f"| {s['name']} | {', '.join(s['files'])} | {s['records']:,} | `{s['sha256'][:16]}` |"
                for s in sorted(c.eval_sets, key=lambda s: s["name"])]
        i = c.index
        out += ["", (f"An example is dropped when it shares a run of {i['ngram']} tokens with an evaluation "
                f"record ({i['ngrams']:,} runs indexed; {i['boilerplate']:,} runs found in 3 or more tasks are "
                f"boilerplate and ignored), or when its 5-token shingles have a Jaccard similarity of "
                f"{i['threshold']} or more with one of {i['texts']:,} evaluation texts.")]
    else:
        out.append("No evaluation set was given: the examples were not decontaminated.")
    out += ["", "## Parameters", "", "```json", json.dumps(c.params, indent=1, sort_keys=True), "```",
            "", "## Lineage", "",
            "The warehouse runs that made the pairs and diffs of these examples:", "",
            "| run | stage | examples |", "| --- | --- | --- |"]
    out += [f"| {run} | {stage} | {n:,} |" for run, stage, n in sorted(c.lineage)]
    if c.notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in c.notes]
    return "\n".join(out) + "\n"


def _how_to_load(splits: tuple[str, ...]) -> list[str]:
    """The card's loading instructions, naming only the splits written (tests run them as written)."""
    shown = ", ".join(f"`{s}`" for s in splits)
    out = [f"Hugging Face `datasets` (the header above names the splits: {shown}):", "",
           "```python", "from datasets import load_dataset", "",
           'dataset = load_dataset("<this folder>")', "```", ""]
    if "train" not in splits:
        return out
    other = (" (the same with `split: eval` and `eval.jsonl` for `eval_loader`)" if "eval" in splits else
             " (no eval.jsonl was written: see Notes)")
    return out + [
        f"LLM Foundry, `train_loader`{other}:",
        "",
        "```yaml",
        "train_loader:",
        "  name: finetuning",
        "  dataset:",
        "    hf_name: json",
        "    hf_kwargs:",
        "      data_files:",
        "        train: <this folder>/train.jsonl",
        "    split: train",
        "    max_seq_len: 4096",
        "    decoder_only_format: true",
        "    shuffle: true",
        "```",
        "",
    ]


def _example(example: tuple[str, str, str] | None) -> list[str]:
    """The card's example section: one prompt (excerpt) and its response, in a fence no text can close."""
    if example is None:
        return []
    where, prompt, response = example
    text = f"{prompt}\n{response}"
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return ["## An example", "",
            (f"{where}, prompt then response. It was chosen to show a repair of whole lines, not a line the "
             "user was still typing; code lines far from the fix show as `...` here (the file has them all)."),
            "", fence + "text", text, fence, ""]


def _histogram(counts: dict[str, tuple[int, int]]) -> list[str]:
    """Rows of `| key | train | eval | bar |`, most frequent first, the bar scaled to the largest total."""
    if not counts:
        return ["| (none) | 0 | 0 | |"]
    top = max(t + e for t, e in counts.values())
    rows = sorted(counts.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))
    return [f"| {key} | {t:,} | {e:,} | {'█' * max(1, round(BAR * (t + e) / top))} |" for key, (t, e) in rows]
