"""The run report: one self-contained HTML page (figures embedded as PNG) from a run folder's files.

`build_report(run_dir)` reads only what training and evaluation wrote into
the run folder (`config.yaml`, `metadata.json`, `history.json`,
`metrics.json`, `evaluation.npz`, `inspection.json`, `data_sizes.json`,
`timings.json`, `transfer.json`) and writes `<run>/report/report.html` with
the PNGs beside it. The page opens offline: no scripts, no links out. A
section whose file is missing shows a "skipped: <why>" note instead.

Sections: the run (config, data sizes, versions, run time); training curves;
task weights (and gradient conflicts); gates and modality weights; transfer
against single-task baselines; evaluation details per task (and the
missing-modality robustness table).

Example:
    >>> build_report("runs/demo")  # doctest: +SKIP
    PosixPath('runs/demo/report/report.html')
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from keras_mtmm.errors import UserError
from keras_mtmm.report.health import health_section
from keras_mtmm.report.html import Page, esc
from keras_mtmm.report.plots import require_matplotlib, task_colours
from keras_mtmm.report.run import Run
from keras_mtmm.report.sections import (
    curves_section,
    evaluation_section,
    header_section,
    inspection_section,
    load_transfer,
    transfer_section,
    weights_section,
)
from keras_mtmm.run_folder import RunFolder


def build_report(run_dir: str | Path, baselines: str | Path | None = None, out: str | Path | None = None) -> Path:
    """Write the run report of a run folder: one self-contained HTML file, with its PNGs beside it.

    Args:
        run_dir: the run folder (`runs/<name>`, as train.py wrote it).
        baselines: a folder of single-task runs (`<folder>/<task>/metrics.json`, from
            `mtmm baselines`); default: the run's `transfer.json`, if any.
        out: the HTML file; default `<run_dir>/report/report.html`. The PNGs go
            into the same folder.

    Returns:
        The path of the HTML file.

    Raises:
        UserError: `run_dir` is not a run folder, a file in it is corrupt, or a
            baseline is missing.
        ImportError: matplotlib is not installed (the message names the pip command).
    """
    require_matplotlib()
    run = Run(run_dir)
    transfer = load_transfer(run, baselines)  # a missing baseline fails before anything is written
    out = Path(out) if out is not None else run.folder / RunFolder.REPORT_PAGE
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.parent == run.folder / RunFolder.REPORT:  # the report's own folder: drop figures of an earlier build
        for stale in out.parent.glob("*.png"):
            stale.unlink()
    page = Page(out.parent, task_colours(run.tasks))
    try:
        sections = [
            header_section(run, page),
            curves_section(run, page),
            weights_section(run, page),
            inspection_section(run, page),
            health_section(run, page),
            transfer_section(run, page, *transfer),
            evaluation_section(run, page),
        ]
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as error:
        # The files parse, but hold something else than train.py wrote (edited, or from another tool).
        raise UserError(
            str(run.dir),
            f"a file of the run folder does not hold what train.py writes ({type(error).__name__}: {error})",
            "restore the run folder's files, or rerun train.py into a new folder",
        ) from None
    out.write_text(render(run, sections), encoding="utf-8")
    return out


def render(run: Run, sections: list[tuple[str, str, str]]) -> str:
    name = run.metadata.get("name") or run.dir.name
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    contents = "".join(f'<li><a href="#{anchor}">{esc(title)}</a></li>' for anchor, title, _ in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>keras_mtmm run report: {esc(name)}</title><style>{CSS}</style></head>
<body><header><h1>Run report: {esc(name)}</h1>
<p class="intro">run folder <code>{esc(run.dir.resolve())}</code> &middot; report built {generated} by keras_mtmm</p>
<nav><ol>{contents}</ol></nav></header>
{"".join(body for _, _, body in sections)}
</body></html>
"""


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; max-width: 1120px;
  margin: 0 auto; padding: 0 20px 60px; }
h1 { margin: 24px 0 4px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 40px; }
h3 { margin: 22px 0 8px; font-size: 16px; }
.intro { color: #555; margin: 4px 0 12px; }
nav ol { columns: 2; margin: 8px 0; color: #555; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; }
td .num { font-variant-numeric: tabular-nums; }
td.right, th.right { text-align: right; }
tr.negative td { background: #fdecea; }
.flag { color: #b3261e; font-weight: 600; }
.worse { color: #b3261e; } .better { color: #1b7f3b; } .delta { font-size: 12px; margin-left: 4px; }
.warning { color: #8a1c1c; background: #fdecea; border-left: 4px solid #d93025; padding: 6px 10px; }
.skipped { color: #6b5200; background: #fff8e1; border-left: 4px solid #f0c000; padding: 6px 10px; }
.metric-name { color: #666; font-size: 12px; margin-right: 4px; }
.task { border-left: 5px solid #999; padding-left: 6px; font-weight: 600; }
figure { margin: 10px 0 18px; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #666; font-size: 13px; } .file { color: #999; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; } .grid figure { margin: 0; }
.grid img { max-width: 520px; }
details { margin: 10px 0; } summary { cursor: pointer; color: #333; font-weight: 600; }
pre { background: #f7f7f7; padding: 10px; overflow-x: auto; font-size: 13px; }
code { background: #f4f4f4; padding: 0 3px; }
"""
