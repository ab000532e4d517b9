"""The run report's figures: matplotlib (Agg, no pyplot state), imported only when a report is built.

Every function takes plain Python / NumPy data read from the run folder and
returns a matplotlib `Figure`; `png_bytes` renders one. A task keeps its
colour in every figure (`task_colours`).
"""

from __future__ import annotations

import io
import math

import numpy as np

from keras_mtmm.evaluation.transfer import HIGHER_IS_BETTER

PIP_HINT = 'pip install "keras_mtmm[report]"  (or: pip install matplotlib)'
TRAIN_STYLE = {"linestyle": "-", "marker": "o"}
# Task pairs (gradient cosines): no red, which marks conflicts.
PAIR_COLOURS = ("#9467bd", "#8c564b", "#17becf", "#7f7f7f", "#bcbd22", "#e377c2")
BEST_STYLE = {"color": "0.45", "linestyle": ":", "linewidth": 1.4}
# matplotlib's default colour cycle ("tab10"), as hex so the HTML can use the same colours.
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
VALIDATION_STYLE = {"linestyle": "--", "marker": "s", "markerfacecolor": "white"}


def require_matplotlib():
    """Import matplotlib, or raise an ImportError that names the pip command."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"the run report draws its figures with matplotlib, which is not installed: {PIP_HINT}"
        ) from (error)
    return matplotlib


def task_colours(tasks: list[str]) -> dict[str, str]:
    """One colour per task (matplotlib's tab10 cycle, in config order), the same in every figure and table."""
    return {task: TAB10[index % len(TAB10)] for index, task in enumerate(tasks)}


def png_bytes(figure) -> bytes:
    """The figure rendered as PNG (Agg canvas, 110 dpi)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _integer_epochs(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def _values(history: dict, key: str) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in history.get(key, [])], dtype=np.float64)


def _train_validation_legend(figure, best_epoch: int | None = None) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="0.3", label="training", **TRAIN_STYLE),
        Line2D([], [], color="0.3", label="validation", **VALIDATION_STYLE),
    ]
    if best_epoch is not None:
        handles.append(Line2D([], [], **BEST_STYLE, label=f"kept checkpoint (epoch {best_epoch + 1})"))
    figure.legend(handles=handles, loc="outside upper center", ncols=3, frameon=False)


def training_curves(history: dict, tasks: dict[str, str], colours: dict[str, str], best_epoch: int | None):
    """The total loss on top, then one row per task: its loss (left) and main metric (right), one epoch axis.

    Args:
        history: `history.json` (lists per key, `epoch` 0-based).
        tasks: task -> its main metric name.
        colours: task -> colour.
        best_epoch: the 0-based epoch of the kept checkpoint (a dotted line), or None.
    """
    epochs = np.asarray(history["epoch"]) + 1
    layout = [["total", "total"], *([f"{task}:loss", f"{task}:metric"] for task in tasks)]
    figure = _figure(10, 1.2 + 2.1 * len(layout))
    axes = figure.subplot_mosaic(layout, sharex=True)

    def curve(axis, key, colour):
        for prefix, style in (("", TRAIN_STYLE), ("val_", VALIDATION_STYLE)):
            values = _values(history, prefix + key)
            if values.size and not np.all(np.isnan(values)):
                axis.plot(epochs, values, color=colour, markersize=4, **style)

    curve(axes["total"], "loss", "0.15")
    axes["total"].set_title("total weighted loss  Σ w_i L_i", loc="left", fontsize=10)
    axes["total"].set_ylabel("loss")
    for task, metric in tasks.items():
        curve(axes[f"{task}:loss"], f"{task}_loss", colours[task])
        axes[f"{task}:loss"].set_title(f"{task}: loss", loc="left", fontsize=10, color=colours[task])
        axes[f"{task}:loss"].set_ylabel("loss")
        curve(axes[f"{task}:metric"], f"{task}_{metric}", colours[task])
        better = {True: "higher is better", False: "lower is better"}.get(HIGHER_IS_BETTER.get(metric))
        title = f"{task}: {metric}" + (f"  ({better})" if better else "")
        axes[f"{task}:metric"].set_title(title, loc="left", fontsize=10, color=colours[task])
        axes[f"{task}:metric"].set_ylabel(metric)
    for axis in axes.values():
        axis.grid(alpha=0.3)
        if best_epoch is not None:
            axis.axvline(best_epoch + 1, **BEST_STYLE)
    for name in layout[-1]:
        axes[name].set_xlabel("epoch")
    _integer_epochs(axes["total"])
    _train_validation_legend(figure, best_epoch)
    return figure


def weight_trajectories(history: dict, tasks: list[str], colours: dict[str, str], strategy: str):
    """Task weights per epoch; σ per task (uncertainty); pairwise task-gradient cosines (gradient strategies)."""
    epochs = np.asarray(history["epoch"]) + 1
    sigmas = [task for task in tasks if f"sigma_{task}" in history]
    pairs = [key for key in history if key.startswith("grad_cosine_")]
    panels = ["weights"] + (["sigmas"] if sigmas else []) + (["cosines"] if pairs else [])
    figure = _figure(10, 0.8 + 2.6 * len(panels))
    axes = dict(zip(panels, np.atleast_1d(figure.subplots(len(panels), 1, sharex=True))))
    _overlapping_lines(axes["weights"], epochs, {task: _values(history, f"weight_{task}") for task in tasks}, colours)
    top = np.nanmax([np.nanmax(_values(history, f"weight_{task}")) for task in tasks if f"weight_{task}" in history])
    axes["weights"].set_ylim(0, 1.15 * top if np.isfinite(top) and top > 0 else 1)
    axes["weights"].set_title(f"task weights w_i ({strategy}; mean over each epoch's steps)", loc="left", fontsize=10)
    axes["weights"].set_ylabel("weight")
    axes["weights"].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    if sigmas:
        for task in sigmas:
            axes["sigmas"].plot(epochs, _values(history, f"sigma_{task}"), color=colours[task], marker="o", label=task)
        axes["sigmas"].set_title("learned σ_i (uncertainty weighting: w_i ∝ 1/σ_i²)", loc="left", fontsize=10)
        axes["sigmas"].set_ylabel("σ")
        axes["sigmas"].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    if pairs:
        axis = axes["cosines"]
        for index, key in enumerate(pairs):
            first, second = key[len("grad_cosine_") :].split("__", 1)
            axis.plot(
                epochs,
                _values(history, key),
                color=PAIR_COLOURS[index % len(PAIR_COLOURS)],
                marker="o",
                label=f"{first} · {second}",
            )
        axis.axhline(0, color="0.3", linewidth=1)
        low = min(-0.1, float(np.nanmin([np.nanmin(_values(history, key)) for key in pairs])) - 0.05)
        high = max(0.1, float(np.nanmax([np.nanmax(_values(history, key)) for key in pairs])) + 0.05)
        axis.set_ylim(max(low, -1.05), min(high, 1.05))
        axis.axhspan(-1.05, 0, color="tab:red", alpha=0.07)
        axis.text(0.005, 0.02, "conflict (cos < 0)", transform=axis.transAxes, color="tab:red", fontsize=8)
        axis.set_title("cosine of task gradients on the shared parameters (mean per epoch)", loc="left", fontsize=10)
        axis.set_ylabel("cosine")
        axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    for axis in axes.values():
        axis.grid(alpha=0.3)
    axes[panels[-1]].set_xlabel("epoch")
    _integer_epochs(axes[panels[-1]])
    return figure


def _overlapping_lines(axis, epochs, series: dict[str, np.ndarray], colours: dict[str, str]) -> None:
    """One line per task; equal lines (e.g. static weights) are drawn nested, widest first, so all stay visible."""
    drawn = {task: values for task, values in series.items() if values.size}
    equal = len(drawn) > 1 and all(np.allclose(v, next(iter(drawn.values())), equal_nan=True) for v in drawn.values())
    for index, (task, values) in enumerate(drawn.items()):
        width, size = (
            (7 - 5 * index / max(len(drawn) - 1, 1), 11 - 7 * index / max(len(drawn) - 1, 1)) if equal else (2, 5)
        )
        axis.plot(epochs, values, color=colours[task], marker="o", linewidth=width, markersize=size, label=task)
    if equal:
        axis.text(
            0.005, 0.04, "all tasks' weights are equal (lines drawn nested)", transform=axis.transAxes, fontsize=8
        )


def heatmap(rows: dict[str, dict[str, float]], title: str, xlabel: str, ylabel: str, colours: dict[str, str]):
    """An annotated row × column heatmap of weights in [0, 1] (absent cells grey, shown as '–')."""
    columns = list(dict.fromkeys(name for values in rows.values() for name in values))
    # Columns every row has (PLE's shared experts) first, then the others (task-specific ones) in order.
    columns.sort(key=lambda name: not all(name in values for values in rows.values()))
    matrix = np.asarray([[rows[r].get(c, np.nan) for c in columns] for r in rows], dtype=np.float64)
    figure = _figure(max(4.5, 1.6 + 0.95 * len(columns)), max(2.2, 1.3 + 0.5 * len(rows)))
    axis = figure.subplots()
    axis.set_facecolor("0.88")
    vmax = max(1.0, float(np.nanmax(matrix))) if np.isfinite(matrix).any() else 1.0
    image = axis.imshow(np.ma.masked_invalid(matrix), cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
    for (i, j), value in np.ndenumerate(matrix):
        text = "–" if math.isnan(value) else f"{value:.2f}"
        dark = not math.isnan(value) and value > 0.55 * vmax
        axis.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
    rotate = len(columns) > 5 or max(len(str(name)) for name in columns) > 12
    axis.set_xticks(range(len(columns)), columns, rotation=30 if rotate else 0, ha="right" if rotate else "center")
    axis.set_yticks(range(len(rows)), list(rows))
    for label in axis.get_yticklabels():
        label.set_color(colours.get(label.get_text(), "black"))
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, loc="left", fontsize=10)
    figure.colorbar(image, ax=axis, shrink=0.9, label="mean weight")
    return figure


def transfer_bars(transfer: dict, colours: dict[str, str]):
    """Per task, each metric of the multi-task model next to its single-task baseline, with the relative gain."""
    tasks = list(transfer["tasks"])
    columns = min(3, len(tasks))
    grid_rows = -(-len(tasks) // columns)
    figure = _figure(3.6 * columns + 0.4, 3.1 * grid_rows + 0.5)
    axes = np.atleast_1d(figure.subplots(grid_rows, columns, squeeze=False)).ravel()
    for axis, task in zip(axes, tasks):
        entry = transfer["tasks"][task]
        names = list(entry["metrics"])
        positions = np.arange(len(names))
        mtl = [entry["metrics"][m]["mtl"] for m in names]
        single = [entry["metrics"][m]["single"] for m in names]
        axis.bar(positions - 0.2, mtl, 0.4, color=colours[task], label="multi-task")
        axis.bar(positions + 0.2, single, 0.4, color="0.75", label="single-task")
        top = max([*mtl, *single, 1e-12])
        for position, name in zip(positions, names):
            gain = entry["metrics"][name]["relative_gain"]
            axis.text(
                position,
                top * 1.04,
                f"{gain:+.1f}%",
                ha="center",
                va="bottom",
                fontsize=9,
                color="tab:red" if gain < 0 else "tab:green",
            )
        axis.set_ylim(0, top * 1.22)
        axis.set_xticks(positions, names)
        negative = entry["negative_transfer"]
        axis.set_title(
            f"{task}: task Δ {entry['delta']:+.1f}%" + ("  NEGATIVE TRANSFER" if negative else ""),
            loc="left",
            fontsize=10,
            color="tab:red" if negative else "black",
        )
        if negative:
            axis.set_facecolor("#fdecea")
        axis.grid(axis="y", alpha=0.3)
    for axis in axes[len(tasks) :]:
        axis.set_visible(False)
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=colours[tasks[0]], label="multi-task (in the task's colour)"),
        Patch(facecolor="0.75", label="single-task baseline"),
        Patch(facecolor="none", edgecolor="none", label="above the bars: relative gain, + = multi-task better"),
    ]
    figure.legend(handles=handles, loc="outside upper center", ncols=3, frameon=False, fontsize=9)
    return figure


def confusion_matrix(predictions, targets, classes: list[str], title: str, colour: str):
    """Counts of true (rows) × predicted (columns) class; colours are the row's share."""
    size = len(classes)
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (targets.astype(np.int64), np.argmax(predictions, axis=-1)), 1)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = max(3.8, 1.6 + 0.55 * size)
    figure = _figure(side + 0.9, side)
    axis = figure.subplots()
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        colour_text = "white" if shares[i, j] > 0.55 else "black"
        axis.text(j, i, str(count), ha="center", va="center", fontsize=9 if size <= 12 else 6, color=colour_text)
    axis.set_xticks(range(size), classes, rotation=30 if size > 3 else 0, ha="right" if size > 3 else "center")
    axis.set_yticks(range(size), classes)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title, loc="left", fontsize=10, color=colour)
    figure.colorbar(image, ax=axis, shrink=0.85, label="share of the true class's rows")
    return figure


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, colour: str):
    """ROC curves (false vs true positive rate); `curves` maps a legend label to its targets and scores."""
    figure = _figure(5.0, 4.3)
    axis = figure.subplots()
    for index, (label, (targets, scores)) in enumerate(curves.items()):
        false_rate, true_rate = roc_points(targets, scores)
        line_colour = colour if len(curves) == 1 else f"C{index % 10}"
        axis.plot(false_rate, true_rate, color=line_colour, linewidth=2, label=label)
    axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="chance")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.set_aspect("equal")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(title, loc="left", fontsize=10, color=colour)
    axis.legend(loc="lower right", fontsize=8)
    axis.grid(alpha=0.3)
    return figure


def roc_points(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) at every distinct score threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    scores = np.asarray(scores, dtype=np.float64)[order]
    positive = (np.asarray(targets) > 0.5)[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    true_positives = np.cumsum(positive)[last_of_tie]
    false_positives = (last_of_tie + 1) - true_positives
    positives, negatives = max(int(positive.sum()), 1), max(int((~positive).sum()), 1)
    return np.r_[0, false_positives / negatives], np.r_[0, true_positives / positives]


def roc_area(targets: np.ndarray, scores: np.ndarray) -> float | None:
    """The area under `roc_points`' curve (ties averaged, as `heads.roc_auc`); None when one class is absent."""
    positive = np.asarray(targets) > 0.5
    if positive.all() or not positive.any():
        return None
    false_rate, true_rate = roc_points(targets, scores)
    return float(np.sum(np.diff(false_rate) * (true_rate[1:] + true_rate[:-1]) / 2))


def prediction_scatter(predictions, targets, title: str, colour: str, label: str):
    """Predicted against true values, with the y = x line."""
    figure = _figure(5.0, 4.6)
    axis = figure.subplots()
    axis.scatter(targets, predictions, s=14, alpha=0.6, color=colour, edgecolors="none")
    low = float(min(np.min(targets), np.min(predictions)))
    high = float(max(np.max(targets), np.max(predictions)))
    margin = 0.04 * (high - low or 1.0)
    axis.plot([low - margin, high + margin], [low - margin, high + margin], color="0.4", linestyle="--", label="y = x")
    axis.set_xlim(low - margin, high + margin)
    axis.set_ylim(low - margin, high + margin)
    axis.set_aspect("equal")
    axis.set_xlabel(f"true {label}")
    axis.set_ylabel(f"predicted {label}")
    axis.set_title(title, loc="left", fontsize=10, color=colour)
    axis.legend(loc="upper left", fontsize=8)
    axis.grid(alpha=0.3)
    return figure
