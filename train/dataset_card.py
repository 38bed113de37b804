"""What the dataset card of `otlake dataset build` says: counts, sets, lineage, notes and one example."""

from __future__ import annotations

import orjson

from synth.errors import DiffError, SchemaError
from synth.hygiene.decontam import BOILERPLATE_TASKS, Contamination, EvalSet
from synth.hygiene.pipeline import Kept
from synth.schema import parse_prompt, parse_response
from synth.showcase import excerpt, pick
from train.export import Card

SHOWCASE_CANDIDATES = 2000  # examples (train first, in file order) the card's example is chosen from


def build_card(name: str, options, eval_sets: list[EvalSet], contamination: Contamination | None,
               report, splits: dict[str, list[Kept]], skipped: dict[str, str],
               lineage: list[tuple[str, str, int]]) -> Card:
    """The card of a build; `splits` are the examples of each split, `skipped` why a split has no file,
    `lineage` (run id, stage, examples) of the pairs and diffs runs behind the examples."""
    train, eval_ = splits["train"], splits["eval"]
    rules: dict[str, list[int]] = {}
    sources: dict[str, list[int]] = {}
    for side, examples in ((0, train), (1, eval_)):
        for k in examples:
            rules.setdefault(k.rule, [0, 0])[side] += 1
            sources.setdefault(k.source if k.source == "user" else f"{k.source}:{k.model}", [0, 0])[side] += 1
    sets = [{"name": s.name, "files": list(s.files), "records": s.records, "sha256": s.sha256} for s in eval_sets]
    index = {} if contamination is None else {
        "ngram": options.ngram, "ngrams": len(contamination.ngrams), "boilerplate": contamination.boilerplate,
        "texts": len(contamination.texts), "threshold": options.decontam_threshold}
    notes = [f"{split}.jsonl was not written: {why}. Hugging Face `datasets` refuses a split whose file holds "
             "no example, so the header and the loading instructions name only the splits written"
             for split, why in skipped.items()]
    if len(eval_sets) > 1:
        notes.append(f"n-grams in {BOILERPLATE_TASKS}+ tasks count as boilerplate across all sets together")
    return Card(name, len(train), len(eval_), options.params(), report.steps,
                {r: tuple(v) for r, v in rules.items()}, {s: tuple(v) for s, v in sources.items()},
                report.anonymized_examples, dict(report.anonymized_values), report.rerendered,
                sets, index, lineage, notes=notes, example=showcase(splits))


def showcase(splits: dict[str, list[Kept]]) -> tuple[str, str, str] | None:
    """(where, prompt excerpt, response) of the example `synth.showcase` ranks best; None when none qualifies."""
    def candidates():
        seen = 0
        for split, examples in splits.items():
            for line, k in enumerate(examples, 1):
                if seen == SHOWCASE_CANDIDATES:
                    return
                seen += 1
                record = orjson.loads(k.line)
                try:
                    prompt, diff = parse_prompt(record["prompt"]), parse_response(record["response"])
                except (SchemaError, DiffError):  # every written example parses; never let the card fail on it
                    continue
                yield (split, line, prompt, diff, record["response"]), prompt.code, diff, prompt.line

    chosen = pick(candidates())
    if chosen is None:
        return None
    split, line, prompt, diff, response = chosen
    return f"Line {line:,} of {split}.jsonl", excerpt(prompt, diff), response
