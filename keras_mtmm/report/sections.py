"""The run report's sections: each reads a parsed run folder (`report.Run`) and returns its HTML.

A section whose data is missing returns a "skipped: <why>" note in its
place (`Page.skipped`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_mtmm.errors import UserError
from keras_mtmm.evaluation import transfer_seeds as seeded
from keras_mtmm.evaluation.transfer import HIGHER_IS_BETTER
from keras_mtmm.report.html import Page, esc, number, read_json, section, table
from keras_mtmm.report.plots import (
    confusion_matrix,
    heatmap,
    prediction_scatter,
    roc_area,
    roc_curves,
    training_curves,
    transfer_bars,
    weight_trajectories,
)
from keras_mtmm.run_folder import RunFolder
from keras_mtmm.weighting import gradient_strategies

if TYPE_CHECKING:
    from keras_mtmm.report.run import Run

NOT_METRICS = ("loss", "labelled")


def curves_section(run: Run, page: Page) -> tuple[str, str, str]:
    """Per-task training and validation loss and main metric over epochs."""
    intro = "Training (solid) and validation (dashed) per epoch, one shared epoch axis; the dotted line marks the "
    intro += "epoch whose weights were kept (best.keras, lowest validation loss)."
    if not run.history or not run.history.get("epoch"):
        return section("curves", "Training curves", page.skipped("no history.json in the run folder"))
    tasks = {task: run.main_metric(task) for task in run.tasks}
    figure = training_curves(run.history, tasks, page.colours, run.best_epoch())
    caption = "loss and main metric per task over epochs"
    return section("curves", "Training curves", page.figure("training_curves", figure, caption), esc(intro))


def weights_section(run: Run, page: Page) -> tuple[str, str, str]:
    """Task-weight trajectories; σ for uncertainty; gradient cosines for gradient strategies."""
    strategy = run.metadata.get("weighting") or run.setting("weighting", "strategy")
    title = f"Task weights ({strategy})"
    history = run.history or {}
    if not any(f"weight_{task}" in history for task in run.tasks):
        return section("weights", title, page.skipped("history.json has no weight_<task> entries"))
    notes = []
    if not any(key.startswith("grad_cosine_") for key in history):
        if strategy in gradient_strategies():
            notes.append(page.skipped("gradient cosines: history.json has no grad_cosine_<a>__<b> entries"))
        else:
            why = f"gradient cosines: only gradient strategies ({', '.join(gradient_strategies())}) record them"
            notes.append(page.skipped(f"{why}; this run used {strategy}"))
    figure = weight_trajectories(history, run.tasks, page.colours, strategy)
    intro = "The weight w_i of each task in L = Σ w_i L_i, averaged over each epoch's steps (static weights are "
    intro += "flat lines). Gradient strategies also show the cosine similarity of each pair of tasks' gradients on "
    intro += "the shared parameters: below 0, the tasks pull the shared layers in conflicting directions."
    body = page.figure("task_weights", figure, "task weights per epoch") + "".join(notes)
    return section("weights", title, body, esc(intro))


def header_section(run: Run, page: Page) -> tuple[str, str, str]:
    """The run: what was trained, on how much data, with which versions, how long it took."""
    metadata, timings, history = run.metadata, run.timings, run.history or {}
    tasks = ", ".join(f"{page.task(t)} ({esc(metadata['tasks'][t]['type'])})" for t in run.tasks)
    weights = ", ".join(
        f"{esc(t)}={number(w, f'task_weights/{t}', 'metadata')}" for t, w in metadata["task_weights"].items()
    )
    modalities = ", ".join(f"{esc(m)} ({esc(spec.get('type', '?'))})" for m, spec in metadata.get("inputs", {}).items())
    epochs = len(history.get("epoch", []))
    best = run.best_epoch()
    facts = [
        ("tasks", tasks),
        ("modalities", modalities),
        (
            "fusion / sharing / weighting",
            esc(
                " / ".join(
                    [
                        run.setting("fusion", "strategy"),
                        run.setting("sharing", "type"),
                        run.setting("weighting", "strategy"),
                    ]
                )
            ),
        ),
        ("task weights used for the test scores", weights),
        (
            "epochs",
            f"{epochs} run of {esc(run.setting('training', 'epochs'))} configured"
            + (f"; kept checkpoint: epoch {best + 1}" if best is not None else ""),
        ),
    ]
    if timings:
        seconds = ", ".join(
            f"{label} {number(timings[key], key, 'timings', digits=1)} s"
            for key, label in (("load_s", "load"), ("prepare_s", "prepare"), ("fit_s", "fit"), ("export_s", "export"))
            if key in timings
        )
        facts.append(("run time", f"{number(timings.get('total_s'), 'total_s', 'timings', digits=1)} s ({seconds})"))
        throughput = timings.get("examples_per_s")
        facts.append(
            (
                "training throughput",
                f"{number(throughput, 'examples_per_s', 'timings', digits=0)} examples/s "
                f"({esc(timings.get('train_rows'))} training rows × {esc(timings.get('epochs_run'))} epochs "
                "/ fit time, validation included)",
            )
        )
    else:
        facts.append(("run time", page.skipped("no timings.json in the run folder")))
    if history.get("epoch_time_s"):
        times = [t for t in history["epoch_time_s"] if t is not None]
        facts.append(("time per epoch", f"{number(sum(times) / len(times), digits=2)} s (mean, validation included)"))
    body = "<table>" + "".join(f"<tr><th>{esc(name)}</th><td>{value}</td></tr>" for name, value in facts) + "</table>"
    body += "<h3>Data</h3>" + _data_sizes(run, page)
    versions = metadata.get("reproducibility") or metadata.get("versions") or {}
    body += "<h3>Versions and reproducibility</h3>"
    body += table([esc(k) for k in versions], [[esc(v) for v in versions.values()]]) if versions else ""
    body += "<details><summary>resolved config (config.yaml)</summary>"
    body += f"<pre>{esc(run.config_yaml)}</pre></details>"
    return section("run", "The run", body)


def _data_sizes(run: Run, page: Page) -> str:
    sizes = run.data_sizes
    if not sizes:
        return page.skipped("no data_sizes.json in the run folder (written by training)")
    splits = list(sizes.get("examples", {}))
    header = ["split", "examples"] + [f"labelled: {page.task(t)}" for t in run.tasks]
    rows = []
    for split in splits:
        labelled = sizes.get("labelled", {}).get(split, {})
        cells = [esc(split), number(sizes["examples"][split], f"examples/{split}", "data_sizes")]
        cells += [number(labelled.get(t), f"labelled/{split}/{t}", "data_sizes") for t in run.tasks]
        rows.append(cells)
    return table(header, rows)


def inspection_section(run: Run, page: Page) -> tuple[str, str, str]:
    """Gate heatmaps (MMoE/PLE) and modality weights per task, on the validation split."""
    title = "Gates and modality weights"
    summary = run.inspection
    if summary is None:
        why = "no inspection.json in the run folder (training writes it; `mtmm inspect --model RUN/best.keras "
        why += "--output RUN/inspection.json` makes it for an older run)"
        return section("inspection", title, page.skipped(why))
    where = f"{summary.get('split', 'validation')} split" + (f", {summary['rows']} rows" if "rows" in summary else "")
    sharing, fusion = run.setting("sharing", "type"), run.setting("fusion", "strategy")
    body = "<h3>Gates (task × expert)</h3>"
    if summary.get("gates"):
        label = f"mean gate weight (uniform: {_uniform(summary['gates'])})"
        figure = heatmap(summary["gates"], label, "expert", "task", page.colours)
        caption = "mean softmax gate weight of each task over each expert"
        experts = [set(gates) for gates in summary["gates"].values()]
        if any(names != experts[0] for names in experts):
            caption += "; –: an expert of another task, which this task's gate does not read"
        body += page.figure("gates", figure, caption)
    else:
        body += page.skipped(f"sharing type '{sharing}' has no gates (mmoe and ple have)")
    body += "<h3>Modality weights</h3>"
    weights = summary.get("modality_weights") or {}
    if "cross_attention" in weights:
        figure = heatmap(weights["cross_attention"], "mean cross-attention mass", "key modality", "query modality", {})
        body += page.figure("modality_weights", figure, "attention mass each modality's tokens give the others")
    elif weights:
        label = f"mean modality weight (uniform: {_uniform(weights)})"
        figure = heatmap(weights, label, "modality", "task", page.colours)
        caption = "modality weights each task used (missing modalities excluded)"
        if len(weights) > 1 and all(row == next(iter(weights.values())) for row in weights.values()):
            caption += f"; the same for every task: '{fusion}' fusion is not task-conditioned"
        body += page.figure("modality_weights", figure, caption)
    else:
        why = f"fusion strategy '{fusion}' has no modality weights (weighted, late, gated, attention and "
        body += page.skipped(why + "cross_attention have)")
    if summary.get("cross_stitch"):
        body += "<h3>Cross-stitch mixing matrices (row task's input from each column task)</h3>"
        for index, matrix in enumerate(summary["cross_stitch"]):
            rows = [[page.task(t)] + [number(v, digits=3) for v in values] for t, values in zip(run.tasks, matrix)]
            body += f"<p>after layer {index + 1}</p>" + table(["task"] + [page.task(t) for t in run.tasks], rows)
    if summary.get("fusion_weights"):
        modalities = list(run.metadata.get("inputs", {}))
        body += "<h3>Learned fusion weights (global, before masking)</h3>"
        rows = [
            [esc(layer)] + [number(v, digits=3) for v in values] for layer, values in summary["fusion_weights"].items()
        ]
        body += table(["layer"] + [esc(m) for m in modalities], rows)
    return section("inspection", title, body, esc(f"From inspection.json ({where})."))


def _uniform(rows: dict[str, dict[str, float]]) -> str:
    """The weight each column would get if all were equal (e.g. 1/3 of 3 experts), as text."""
    sizes = {len(values) for values in rows.values()}
    return f"{1 / sizes.pop():.2f}" if len(sizes) == 1 else "1/n of a row's n columns"


def transfer_section(run: Run, page: Page, transfer: dict | None, source: str) -> tuple[str, str, str]:
    """The multi-task model against single-task baselines (`load_transfer`): bars, Δm, negative transfer."""
    title = "Multi-task vs single-task"
    if transfer is None:
        why = "no single-task baselines (train with --single-task-baselines, which writes transfer.json, or pass "
        return section("transfer", title, page.skipped(why + "`mtmm report RUN --baselines DIR`)"))
    rows, classes = [], []
    for task, entry in transfer["tasks"].items():
        for name, values in entry["metrics"].items():
            key = f"tasks/{task}/metrics/{name}"
            rows.append(
                [
                    page.task(task),
                    esc(name),
                    number(values["mtl"], f"{key}/mtl", "transfer"),
                    number(values["single"], f"{key}/single", "transfer"),
                    number(values["relative_gain"], f"{key}/relative_gain", "transfer", digits=2, signed=True),
                    "",
                ]
            )
            classes.append("negative" if entry["negative_transfer"] else "")
        flag = '<span class="flag">negative transfer</span>' if entry["negative_transfer"] else ""
        rows.append(
            [
                page.task(task),
                "<i>task Δ (mean)</i>",
                "",
                "",
                number(entry["delta"], f"tasks/{task}/delta", "transfer", digits=2, signed=True),
                flag,
            ]
        )
        classes.append("negative" if entry["negative_transfer"] else "")
    form = transfer.get("form", "libmtl")
    better = (
        "higher is better, > 0: multi-task beats single-task"
        if form == "libmtl"
        else ("flat form: lower is better, < 0: multi-task beats single-task")
    )
    delta_m = number(transfer["delta_m"], "delta_m", "transfer", digits=2, signed=True)
    if "delta_m_std" in transfer:
        delta_m += f" ± {number(transfer['delta_m_std'], 'delta_m_std', 'transfer', digits=2)}"
        better += f"; mean ± std over {transfer['comparisons']} seeds, {transfer.get('negative_transfer_rule', '')}"
    body = f"<p><b>Δm = {delta_m}%</b> ({esc(form)} form; {esc(better)}). Source: {esc(source)}.</p>"
    negative = transfer.get("negative_transfer") or []
    if negative:
        body += f'<p class="flag">negative transfer: {", ".join(esc(t) for t in negative)}</p>'
    body += page.figure("transfer", transfer_bars(transfer, page.colours), "each metric, multi-task vs single-task")
    body += table(["task", "metric", "multi-task", "single-task", "gain %", ""], rows, classes)
    for skip in transfer.get("skipped", []):
        body += f"<p class='intro'>not compared: {esc(skip['task'])}/{esc(skip['metric'])}: {esc(skip['reason'])}</p>"
    return section("transfer", title, body)


def load_transfer(run: Run, baselines) -> tuple[dict | None, str]:
    """The comparison: from `baselines` (single-task run folders, one or several seeds), else transfer.json,
    else metrics.json's. The run's other seeds (`<run>/seeds/seed-<s>/metrics.json`) join the multi-task side."""
    if baselines is not None:
        if run.metrics is None:
            raise UserError(
                "--baselines", f"the run {run.dir} has no metrics.json to compare", "train with a test split"
            )
        reports = {}
        for seed, folder in seeded.baseline_seed_folders(baselines).items():
            reports[seed] = {}
            for task in run.metrics["tasks"]:
                path = folder / task / RunFolder.METRICS
                if not path.is_file():
                    raise UserError(
                        "--baselines",
                        f"no single-task baseline for task '{task}' ({path} is missing)",
                        "train them with `mtmm baselines --config ... --output-dir DIR`",
                    )
                reports[seed][task] = read_json(path)
        others = {s: p / RunFolder.METRICS for s, p in run.folder.other_seed_runs().items()}
        mtl = {run.folder.seed(): run.metrics, **{s: read_json(p) for s, p in others.items() if p.is_file()}}
        try:  # seed by seed, each run's metrics.json scored on its own seed's split
            seeds, mtl_reports, single_reports = seeded.pair_by_seed(mtl, reports)
            transfer = seeded.compare_over_seeds(mtl_reports, single_reports, seeds={"seeds": seeds})
            return transfer, f"{baselines} (metrics.json)"
        except ValueError as error:
            raise UserError("--baselines", str(error), "train both on this config, with the same --seeds N") from None
    if run.transfer is not None:
        return run.transfer, RunFolder.TRANSFER
    if run.metrics is not None and "transfer" in run.metrics:
        return run.metrics["transfer"], "metrics.json (evaluate.py --baselines)"
    return None, ""


def evaluation_section(run: Run, page: Page) -> tuple[str, str, str]:
    """The metrics table, per-task plots from evaluation.npz, and the robustness table."""
    title = "Evaluation"
    metrics = run.metrics
    if metrics is None:
        return section("evaluation", title, page.skipped("no metrics.json in the run folder (empty test split?)"))
    intro = f"{esc(metrics.get('split', 'test'))} split, {number(metrics.get('examples'), 'examples')} examples; "
    intro += "the numbers are metrics.json's, printed to 4 decimals."
    rows = []
    for task, result in metrics["tasks"].items():
        cells = [
            page.task(task),
            esc(run.metadata["tasks"].get(task, {}).get("type", "?")),
            number(result.get("labelled"), f"tasks/{task}/labelled"),
            number(metrics["weights"].get(task), f"weights/{task}"),
            number(result.get("loss"), f"tasks/{task}/loss"),
        ]
        shown = [
            f"<span class='metric-name'>{esc(m)}</span>{number(v, f'tasks/{task}/{m}')}"
            for m, v in result.items()
            if m not in NOT_METRICS
        ]
        rows.append(cells + ["&emsp;".join(shown)])
    body = table(["task", "type", "labelled", "weight w_i", "loss", "metrics"], rows)
    body += f"<p>total weighted loss Σ w_i L_i = {number(metrics.get('loss'), 'loss')}</p>"
    body += "<h3>Per task</h3>" + _task_plots(run, page)
    body += "<h3>Missing-modality robustness</h3>" + _robustness(run, page)
    return section("evaluation", title, body, intro)


def _task_plots(run: Run, page: Page) -> str:
    if run.evaluation is None:
        why = "no evaluation.npz in the run folder (training writes it; `evaluate.py --model RUN/best.keras "
        return page.skipped(why + "--output RUN/metrics.json` writes it for an older run)")
    split, dumps = run.evaluation
    figures, notes = [], []
    for task in run.tasks:
        if task not in dumps or run.metadata["tasks"][task]["type"] == "masked_language_model":
            notes.append(page.skipped(f"{task}: {'a language model' if task in dumps else 'not in evaluation.npz'}"))
            continue
        spec, dump = run.metadata["tasks"][task], dumps[task]
        labelled = dump["mask"] > 0
        predictions, targets = dump["predictions"][labelled], dump["targets"][labelled]
        colour = page.colours[task]
        if not labelled.any():
            notes.append(page.skipped(f"{task}: no labelled rows in evaluation.npz"))
            continue
        kind = spec["type"]
        where = f"{split}, {int(labelled.sum())} labelled {'tokens' if kind == 'token_tagging' else 'rows'}"
        if kind in ("multiclass", "token_tagging"):
            figure = confusion_matrix(
                predictions, targets, spec["classes"], f"{task}: confusion matrix ({where})", colour
            )
            caption = f"{task}: true × predicted class counts"
        elif kind == "binary":
            auc = roc_area(targets[:, 0], predictions[:, 0])
            label = f"AUC {auc:.4f}" if auc is not None else "AUC n/a (one class only)"
            positive = spec["classes"][1] if spec.get("classes") else "positive"
            figure = roc_curves(
                {label: (targets[:, 0], predictions[:, 0])}, f"{task}: ROC, positive = '{positive}' ({where})", colour
            )
            caption = f"{task}: ROC curve"
        elif kind == "multilabel":
            curves = {name: (targets[:, i], predictions[:, i]) for i, name in enumerate(spec["classes"])}
            figure = roc_curves(curves, f"{task}: ROC per label ({where})", colour)
            caption = f"{task}: ROC curve of each label"
        else:
            mae = float(abs(predictions[:, 0] - targets[:, 0]).mean())
            figure = prediction_scatter(
                predictions[:, 0],
                targets[:, 0],
                f"{task}: predicted vs true ({where}; MAE {mae:.4g})",
                colour,
                spec.get("label", task),
            )
            caption = f"{task}: predicted against true value"
        figures.append(page.figure(f"evaluation_{task}", figure, caption))
    return f'<div class="grid">{"".join(figures)}</div>' + "".join(notes)


def _robustness(run: Run, page: Page) -> str:

    robustness = run.metrics.get("robustness")
    if not robustness:
        why = "metrics.json has no robustness section (`evaluate.py --model RUN/best.keras --robustness --output "
        return page.skipped(why + "RUN/metrics.json` adds it)")
    baseline = robustness.get("all", {})
    columns = [(t, m) for t, result in baseline.items() for m in result if m not in NOT_METRICS]
    rows = []
    for condition, results in robustness.items():
        cells = [esc(condition.replace("without_", "without ").replace("all", "all modalities"))]
        for task, metric in columns:
            value = results.get(task, {}).get(metric)
            cell = number(value, f"robustness/{condition}/{task}/{metric}")
            reference = baseline[task].get(metric)
            if condition != "all" and value is not None and reference is not None:
                change = value - reference
                worse = change < 0 if HIGHER_IS_BETTER.get(metric, True) else change > 0
                visible = abs(change) >= 5e-5  # what prints as a change at 4 decimals
                css = ("worse" if worse else "better") if visible else ""
                shown = f"{change:+.4f}" if visible else "±0"
                cell += f'<span class="delta {css}">({shown})</span>'
            cells.append(cell)
        rows.append(cells)
    header = ["condition"] + [f"{page.task(t)} {esc(m)}" for t, m in columns]
    intro = "<p class='intro'>Each modality removed for every row, as a serving client leaving it out; "
    intro += "in brackets the change against all modalities (red: worse).</p>"
    return intro + table(header, rows)
