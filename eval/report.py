"""Reports of eval runs: a Markdown table and PNG plots, recomputed from the stored per-sample rows.

A run folder (`otlake eval run --out DIR`) holds run.json and items.jsonl;
the report reads items.jsonl and aggregates it again with
`metrics.aggregate`, so what it shows never depends on a stored summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from .errors import EvalError
from .metrics import INFRA_FAILURES, LOWER_IS_BETTER, METRICS, aggregate, not_scored

PLOTTED = ("target_as_reference", "deletes_only", "applies", "changes", "target_gone", "functional", "ast_exact",
           "ast_or_string")
PANELS_PER_ROW = 4


@dataclass(frozen=True)
class RunData:
    """One run folder: its summary and its per-sample rows."""

    folder: Path
    run_id: str
    bench: str
    model: str
    samples: int
    rows: tuple[dict, ...]

    @property
    def label(self) -> str:
        return f"{self.model} ({self.bench})"


def read_run(folder: str | Path) -> RunData:
    """A run folder; EvalError names the file that is missing or broken."""
    folder = Path(folder)
    try:
        info = orjson.loads((folder / "run.json").read_bytes())
        rows = tuple(orjson.loads(line) for line in (folder / "items.jsonl").read_bytes().splitlines() if line.strip())
    except FileNotFoundError as e:
        raise EvalError(f"{folder}: not an eval run folder ({Path(e.filename).name} is missing; "
                        "`otlake eval run --out DIR` writes one)") from e
    except orjson.JSONDecodeError as e:
        raise EvalError(f"{folder}: run.json or items.jsonl is not valid JSON ({e})") from e
    return RunData(folder, info.get("run_id", ""), info.get("bench", ""), info.get("model", ""),
                   int(info.get("samples", 1)), rows)


def summarize(run: RunData, by: Sequence[str] = ()) -> dict:
    """The run's metrics, recomputed from its rows (pass@k too when it has several samples)."""
    scored = [r for r in run.rows if r.get("status") == "scored"]
    return aggregate(scored, by, run.samples if run.samples > 1 else None)


def markdown(runs: Sequence[RunData]) -> str:
    """The report's Markdown: all items per run, the samples not scored, then per category and per subtype."""
    head = "| run | model | bench | items | " + " | ".join(METRICS) + " |"
    rule = "|" + "---|" * (4 + len(METRICS))

    def line(run: RunData, group: str, stats: dict) -> str:
        cells = [_pct(stats.get(m)) + (f" ({stats.get(f'{m}_items')})" if m == "functional" else "")
                 for m in METRICS]
        return f"| {run.run_id} | {run.model} | {run.bench}{group} | {stats['items']} | " + " | ".join(cells) + " |"

    note = ("Rates are pass@1 over the items a metric is scored on; functional shows, in brackets, how many items "
            "it is scored on (items with tests). " + ", ".join(LOWER_IS_BETTER) + " is lower-is-better (the share of applied answers that "
            "only remove code); every other rate is higher-is-better. A sample whose meta-LSP check or sandbox run "
            "failed is not scored: its item is left out of that metric, and the samples are counted under "
            "\"Not scored\".")
    out = ["# Eval report", "", note, "", "## All items", "", head, rule]
    out += [line(run, "", summarize(run).get((), {"items": 0})) for run in runs]
    why = "Samples per metric whose checker failed (target_gone: the meta-LSP; functional: the sandbox)."
    out += ["", "## Not scored", "", why, "", "| run | " + " | ".join(INFRA_FAILURES) + " |",
            "|" + "---|" * (1 + len(INFRA_FAILURES))]
    for run in runs:
        counts = not_scored(r for r in run.rows if r.get("status") == "scored")
        out.append(f"| {run.run_id} | " + " | ".join(str(counts[m]) for m in INFRA_FAILURES) + " |")
    for column in ("category", "subtype"):
        out += ["", f"## By {column}", "", head.replace("| bench |", f"| bench / {column} |"), rule]
        for run in runs:
            out += [line(run, f" / {key[0] or '-'}", stats) for key, stats in summarize(run, (column,)).items()]
    if any(run.samples > 1 for run in runs):
        out += ["", "## pass@k", "", "| run | k | " + " | ".join(METRICS) + " |", "|" + "---|" * (2 + len(METRICS))]
        for run in runs:
            if run.samples > 1:
                stats = summarize(run).get((), {})
                out.append(f"| {run.run_id} | {run.samples} | "
                           + " | ".join(_pct(stats.get(f"{m}@{run.samples}")) for m in METRICS) + " |")
    return "\n".join(out) + "\n"


def plot(runs: Sequence[RunData], out: Path) -> list[Path]:
    """metrics.png (each metric per run) and by_category.png (each metric per category and run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(runs), 1)
    for n, run in enumerate(runs):
        stats = summarize(run).get((), {})
        values = [stats.get(m) or 0.0 for m in PLOTTED]
        ax.bar([i + n * width for i in range(len(PLOTTED))], values, width, label=run.label)
    ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(PLOTTED))], [_title(m, "\n") for m in PLOTTED],
                  fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("pass@1")
    ax.set_title("Repair metrics per model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, plt, out / "metrics.png"))

    categories = sorted({r.get("category") or "-" for run in runs for r in run.rows if r.get("status") == "scored"})
    columns = min(PANELS_PER_ROW, len(PLOTTED))
    grid_rows = -(-len(PLOTTED) // columns)
    fig, grid = plt.subplots(grid_rows, columns, figsize=(4 * columns, 4 * grid_rows), sharey=True, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(PLOTTED):]:
        ax.set_visible(False)
    for ax, metric in zip(axes, PLOTTED):
        for n, run in enumerate(runs):
            stats = {k[0] or "-": v for k, v in summarize(run, ("category",)).items()}
            values = [(stats.get(c) or {}).get(metric) or 0.0 for c in categories]
            ax.bar([i + n * width for i in range(len(categories))], values, width, label=run.label)
        ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(categories))], categories)
        ax.set_title(_title(metric))
        ax.set_ylim(0, 1.05)
    for row in grid:
        row[0].set_ylabel("pass@1")
    axes[len(PLOTTED) - 1].legend(fontsize=7)
    fig.tight_layout()
    written.append(_save(fig, plt, out / "by_category.png"))
    return written


def _save(fig, plt, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _title(metric: str, sep: str = " ") -> str:
    return f"{metric}{sep}(lower is better)" if metric in LOWER_IS_BETTER else metric


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"
