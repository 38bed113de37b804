"""`otlake train tokenizer`: a byte-level BPE trained on a dataset's code (Hugging Face `tokenizers`).

The measure is tokens per character on held-out code (fewer is better: more code per context window, cheaper
training and serving). It is reported for the code tokenizer, for the same BPE trained on prose (Python's own
documentation in pydoc_data: the same algorithm and vocabulary on as many characters as the library ships, up to
the code's budget), and for a base model's tokenizer when one is given. The folder written loads with
transformers' AutoTokenizer (tokenizer.json + tokenizer_config.json), so a model can be built around it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from synth.schema import parse_prompt

from .config import DatasetRef
from .errors import TrainError

SPECIALS = ("<|endoftext|>", "<|pad|>")


def dataset_code(ref: DatasetRef) -> list[str]:
    """The distinct code files of a dataset's prompts (train and eval splits), in a stable order."""
    texts: dict[str, str] = {}
    for split in ("train", "eval"):
        path = ref.folder / f"{split}.jsonl"
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                code = parse_prompt(json.loads(line)["prompt"]).code
            except Exception as e:  # noqa: BLE001  (any malformed row is named, not a traceback)
                raise TrainError(f"{path}:{n}: not a dataset example ({type(e).__name__}: {e})") from None
            texts.setdefault(hashlib.sha256(code.encode()).hexdigest(), code)
    return [texts[k] for k in sorted(texts)]


def prose(budget: int) -> str:
    """Up to budget characters of English prose that ships with Python (its documentation's topics)."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    return text[:budget]


def bpe(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=list(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def tokens_per_char(tok, texts: list[str]) -> tuple[int, float]:
    tokens = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    return tokens, tokens / max(1, sum(len(t) for t in texts))


def save(tok, out: Path, max_len: int = 4096) -> None:
    """tokenizer.json plus the config AutoTokenizer needs to load it as a fast tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": SPECIALS[0], "eos_token": SPECIALS[0],
        "unk_token": None, "pad_token": SPECIALS[1], "model_max_length": max_len, "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
    }, indent=1) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": SPECIALS[0], "eos_token": SPECIALS[0], "pad_token": SPECIALS[1]}, indent=1) + "\n")


def train_tokenizer(ref: DatasetRef, vocab: int, out: Path, base: str | None = None, held_out: float = 0.1) -> dict:
    """Train, save to out, and measure; returns the report (also written to out/report.json)."""
    from tokenizers import Tokenizer

    files = dataset_code(ref)
    # a file is held out by its digest, so the split does not depend on the order rows were written in
    held = [t for t in files if int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < held_out]
    train = [t for t in files if t not in set(held)] if held else files[:]
    if len(files) < 2 or not held or not train:
        raise TrainError(f"dataset {ref.name!r} has {len(files)} distinct code file(s): too few to train on and "
                         f"hold out {held_out:.0%} (build a bigger dataset, or raise --held-out)")
    base_tok = None
    if base:
        path = Path(base)
        path = path / "tokenizer.json" if path.is_dir() else path
        if not path.is_file():
            raise TrainError(f"--base {base}: no tokenizer.json there (pass a Hugging Face model folder)")
        base_tok = Tokenizer.from_file(str(path))
    code_tok = bpe(train, vocab)
    train_chars = sum(len(t) for t in train)
    prose_text = prose(train_chars)
    prose_tok = bpe([p for p in prose_text.split("\n\n") if p], vocab)
    rows = {}
    for name, tok in (("code", code_tok), ("prose", prose_tok), ("base", base_tok)):
        if tok is None:
            continue
        tokens, ratio = tokens_per_char(tok, held)
        rows[name] = {"tokens": tokens, "tokens_per_char": round(ratio, 5), "vocab": tok.get_vocab_size()}
    save(code_tok, Path(out))
    report = {"dataset": ref.name, "vocab": code_tok.get_vocab_size(), "train_files": len(train),
              "train_chars": train_chars, "prose_chars": len(prose_text), "held_out_files": len(held),
              "held_out_chars": sum(len(t) for t in held), "base": str(base) if base else None, "tokenizers": rows}
    (Path(out) / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
