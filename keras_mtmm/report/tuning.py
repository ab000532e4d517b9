"""The tuning report: `<tune folder>/report.html`, from `trials.json` only (nothing is trained or re-scored).

Two figures and a table: the objective of each trial in trial order (the best so far as a line), the
objective against each tuned key (a strip per choice, or a scatter over a range, log-scaled for a log
range), and the leaderboard. Built at the end of `mtmm tune`.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

from keras_mtmm.errors import UserError
from keras_mtmm.report.build import CSS
from keras_mtmm.report.html import Page, esc, table
from keras_mtmm.report.plots import TAB10, _figure, require_matplotlib
from keras_mtmm.training.tune_records import SEARCH, TRIALS

REPORT = "report.html"


def objective_per_trial(records: list[dict], direction: str):
    """Each completed trial's objective in trial order, and the best so far."""
    figure = _figure(7.0, 3.2)
    axis = figure.add_subplot()
    done = [(i, r["objective"]) for i, r in enumerate(records) if r["objective"] is not None]
    if done:
        xs, ys = zip(*done)
        axis.plot(xs, ys, "o", color=TAB10[0], label="trial")
        pick = min if direction == "min" else max
        best = [pick(ys[: k + 1]) for k in range(len(ys))]
        axis.step(xs, best, where="post", color=TAB10[1], label="best so far")
        axis.legend(loc="best", fontsize=8)
    axis.set_xticks(range(len(records)), [str(r["trial"]) for r in records], fontsize=7)
    axis.set_xlabel("trial")
    axis.set_ylabel(f"objective ({direction})")
    return figure


def objective_against(records: list[dict], key: str, log: bool):
    """The objective against one tuned key's values."""
    figure = _figure(4.2, 3.0)
    axis = figure.add_subplot()
    points = [(r["values"].get(key), r["objective"]) for r in records if r["objective"] is not None]
    points = [(x, y) for x, y in points if x is not None]
    categorical = any(isinstance(x, (str, bool)) for x, _ in points)
    if categorical:
        labels = sorted({str(x) for x, _ in points})
        axis.plot([labels.index(str(x)) for x, _ in points], [y for _, y in points], "o", color=TAB10[0], alpha=0.7)
        axis.set_xticks(range(len(labels)), labels, fontsize=8)
    elif points:
        axis.plot([x for x, _ in points], [y for _, y in points], "o", color=TAB10[0], alpha=0.7)
        if log:
            axis.set_xscale("log")
    axis.set_xlabel(key)
    axis.set_ylabel("objective")
    return figure


def build_tuning_report(folder: str | Path) -> Path:
    """Write `<folder>/report.html` (and its PNGs) from `<folder>/trials.json`; return its path."""
    require_matplotlib()
    folder = Path(folder)
    records = _records(folder / TRIALS)
    config = _tune_section(folder, records)
    direction = (config.get("objective") or {}).get("direction", "min")
    page = Page(folder, {})
    figures = [page.figure("tuning_objective", objective_per_trial(records, direction), "objective per trial")]
    for key, entry in (config.get("space") or {}).items():
        figure = objective_against(records, key, bool(isinstance(entry, dict) and entry.get("log")))
        figures.append(page.figure(f"tuning_{key}", figure, f"objective against {key}"))
    keys = list(config.get("space") or {})
    rows = [
        [
            esc(r["trial"]),
            *[esc(r["values"].get(k, "-")) for k in keys],
            _number(r["objective"]),
            esc(r["status"]),
        ]
        for r in records
    ]
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>keras_mtmm tuning report</title><style>{CSS}</style></head>
<body><h1>Tuning report</h1>
<p class="intro">tune folder <code>{esc(folder.resolve())}</code> &middot; {len(records)} trials &middot;
objective: {esc(json.dumps(config.get("objective") or {"metric": "val_loss", "direction": "min"}))}
&middot; built {generated}</p>
<div class="grid">{"".join(figures)}</div>
<h2>Trials</h2>{table(["trial", *keys, "objective", "status"], rows)}
</body></html>
"""
    out = folder / REPORT
    out.write_text(html, encoding="utf-8")
    return out


def _records(path: Path) -> list[dict]:
    """`trials.json` as `mtmm tune` writes it; missing or corrupt: a UserError naming it."""
    fix = "run mtmm tune again (it rewrites trials.json from KerasTuner's state)"
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        what = f"cannot be read as the search's trials ({type(error).__name__}: {error})"
        raise UserError(str(path), what, fix) from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "values" in r for r in records):
        raise UserError(str(path), "does not hold the list of trial records mtmm tune writes", fix)
    return records


def _tune_section(folder: Path, records: list[dict]) -> dict:
    """The search's tune section as `mtmm tune` wrote it (the space's keys from the records otherwise)."""
    import yaml

    search = folder / SEARCH
    if search.exists():
        return yaml.safe_load(search.read_text(encoding="utf-8")) or {}
    return {"space": {key: {} for r in records for key in r["values"]}}


def _number(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
