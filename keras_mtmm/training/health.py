"""Training health, shown to the user at the end of a run: dead encoder units, what each modality
contributes to each task, and whether each task beat its label prior. All on the validation split.

- **Dead units**: an encoder output unit is dead when its value does not vary
  over the validation rows (its standard deviation is at most `DEAD_TOLERANCE`
  times the encoder's typical magnitude): it carries nothing about the input
  (a ReLU unit stuck at 0, or an encoder whose weights collapsed).
- **Modality contribution**: each task's main metric with every modality, and
  with each one removed in turn, as a client leaving it out would send it
  (`evaluation.robustness_scores`, the machinery of `evaluate.py
  --robustness`); the drop is signed so that positive means the modality helps.
- **Label prior**: the constant prediction a model with no inputs would learn,
  from the training labels (class frequencies; the mean for a regression);
  a task whose validation loss is not below `LEARNED_RATIO` × the prior's
  has not learned anything its labels' distribution does not already give,
  unless its main metric beats the prior's clearly (by 2% of it, and 0.01).

`warning:` lines name the encoder or task and what to try; a task that
learned and an encoder that is alive get none.
"""

from __future__ import annotations

import math

import numpy as np

from keras_mtmm.data.pipeline import data_errors
from keras_mtmm.data.tables import as_table, iter_tables, num_rows
from keras_mtmm.evaluation.robustness import robustness_scores
from keras_mtmm.evaluation.scoring import encode_targets, raw_inputs, score_tasks
from keras_mtmm.evaluation.transfer import metric_direction
from keras_mtmm.tasks import get_task_type

DEAD_TOLERANCE = 1e-6
MOSTLY_DEAD = 0.5  # warn when at least this fraction of an encoder's units are dead
LEARNED_RATIO = 0.98  # a task learned when its validation loss is below 98% of its label prior's
HEALTH_ROWS = 2000  # validation rows read (enough for the figures; each modality costs one more pass)
PRIOR_ROWS = 100_000  # training rows the label priors are counted on


ENCODER_OUTPUT = "encoder_output/"  # the probe's extra outputs: ENCODER_OUTPUT + modality


def probe_network(network):
    """`network` with each `<modality>_encoder` layer's output as an extra output (`ENCODER_OUTPUT + modality`).

    One model (one traced function) scores the test split and reads the encoders for `dead_units`.
    """
    import keras

    outputs = dict(zip(network.output_names, network.outputs))
    for layer in network.layers:
        if layer.name.endswith("_encoder"):
            output = layer.output
            if isinstance(output, (list, tuple, dict)):  # one vector per task (MTAN): all of their units
                output = keras.layers.Concatenate()(list(output.values() if isinstance(output, dict) else output))
            outputs[ENCODER_OUTPUT + layer.name.removesuffix("_encoder")] = output
    return keras.Model(network.inputs, outputs, name=f"{network.name}_probe")


def dead_units(predict, metadata: dict, table: dict, batch_size: int = 256) -> dict[str, dict]:
    """`{modality: {"units", "dead", "dead_fraction"}}` of every encoder output of a probe's `predict` on `table`."""
    parts: dict[str, list] = {}
    for batch in iter_tables(table, batch_size):
        for name, values in predict(raw_inputs(batch, metadata)).items():
            if name.startswith(ENCODER_OUTPUT):
                parts.setdefault(name.removeprefix(ENCODER_OUTPUT), []).append(np.asarray(values, np.float64))
    result = {}
    for modality, chunks in parts.items():
        values = np.concatenate(chunks)
        values = values.reshape(len(values), -1)
        spread = values.std(axis=0)
        scale = max(float(np.abs(values).mean()), 1.0)
        dead = int(np.sum(spread <= DEAD_TOLERANCE * scale))
        result[modality] = {"units": values.shape[1], "dead": dead, "dead_fraction": dead / values.shape[1]}
    return result


def prior_predictions(metadata: dict, train_targets: dict, train_masks: dict, rows: int) -> dict[str, np.ndarray]:
    """Each task's label-prior prediction for `rows` rows: the training labels' class frequencies or mean."""
    predictions = {}
    for task, spec in metadata["tasks"].items():
        task_type = get_task_type(spec["type"], spec=spec)
        prior = task_type.prior(train_targets[task], train_masks[task], spec.get("classes") or [])
        predictions[task] = np.tile(prior.astype(np.float32), (rows,) + (1,) * prior.ndim)
    return predictions


def label_prior_comparison(metadata: dict, scores: dict, prior_scores: dict) -> dict[str, dict]:
    """Per task: the model's and the prior's validation loss and main metric, and whether the task learned."""
    comparison = {}
    for task, result in scores.items():
        prior = prior_scores[task]
        metric = _main_metric(metadata, task)
        learned = None
        if result.get("labelled") and prior["loss"] > 0:
            learned = bool(result["loss"] < LEARNED_RATIO * prior["loss"]) or _clearly_better(
                metric, result.get(metric), prior.get(metric), result["labelled"]
            )
        comparison[task] = {
            "metric": metric,
            "model": {"loss": result["loss"], metric: result.get(metric)},
            "prior": {"loss": prior["loss"], metric: prior.get(metric)},
            "learned": learned,
        }
    return comparison


def _clearly_better(metric: str, value, prior, labelled: int) -> bool:
    """The main metric beats the prior's by more than chance would on `labelled` rows.

    For a rate where higher is better (accuracy, AUC, ...), by two binomial
    standard errors at the prior's rate, `2·sqrt(p(1−p)/n)`, and at least
    0.01: on 400 rows a binary task must beat a 0.50 prior by 0.05; for other
    metrics, by 2% of the prior's value (and 0.01).
    """
    if value is None or prior is None:
        return False
    higher_is_better = metric_direction(metric)
    if higher_is_better and 0.0 <= prior <= 1.0 and labelled:
        margin = max(2.0 * math.sqrt(prior * (1.0 - prior) / labelled), 0.01)
    else:
        margin = max(0.02 * abs(prior), 0.01)
    return value > prior + margin if higher_is_better else value < prior - margin


def modality_contribution(metadata: dict, robustness: dict) -> dict[str, dict]:
    """Per task: its main metric with all modalities and without each, and the signed drop (positive: helps)."""
    contribution = {}
    for task in metadata["tasks"]:
        metric = _main_metric(metadata, task)
        sign = 1.0 if metric_direction(metric) else -1.0
        everything = robustness["all"][task].get(metric)
        without, drop = {}, {}
        for condition, results in robustness.items():
            if condition == "all":
                continue
            modality = condition.removeprefix("without_")
            without[modality] = value = results[task].get(metric)
            drop[modality] = None if everything is None or value is None else sign * (everything - value)
        contribution[task] = {"metric": metric, "all": everything, "without": without, "drop": drop}
    return contribution


def _main_metric(metadata: dict, task: str) -> str:
    spec = metadata["tasks"][task]
    return (spec.get("metrics") or list(get_task_type(spec["type"]).default_metrics))[0]


def health_warnings(health: dict) -> list[str]:
    """The `warning:` lines for mostly dead encoders and tasks no better than their label prior."""
    lines = []
    for modality, units in health.get("dead_units", {}).items():
        if units["dead_fraction"] >= MOSTLY_DEAD:
            lines.append(
                f"warning: modality '{modality}': {units['dead']} of {units['units']} encoder output units are dead"
                f" on the {health['split']} split (constant on every row); lower training.learning_rate, check the"
                f" '{modality}' columns, or try another modalities.{modality}.encoder.type"
            )
    for task, comparison in health.get("label_prior", {}).items():
        if comparison["learned"] is False:
            helping = [m for m, d in health.get("modality_contribution", {}).get(task, {}).get("drop", {}).items() if d]
            lines.append(
                f"warning: task '{task}': {health['split']} loss {comparison['model']['loss']:.4g} is no better than"
                f" its label prior's {comparison['prior']['loss']:.4g} (predicting the training labels'"
                f" {'mean' if comparison['metric'] in ('mae', 'rmse') else 'frequencies'}); train longer or with a"
                " higher training.learning_rate, check its label column"
                + ("" if helping else ", and that its modalities carry its signal (none changes its metric)")
            )
    return lines


def training_health(predict, splits: dict, metadata: dict, batch_size: int = 256) -> dict | None:
    """Dead units, modality contributions and label priors on (up to `HEALTH_ROWS` of) the validation split.

    `predict`: raw inputs -> outputs of a `probe_network` (its encoder outputs included).
    None when there is no validation data.
    """
    table = as_table(splits["validation"], HEALTH_ROWS)
    rows = num_rows(table)
    if rows == 0:
        return None
    robustness = robustness_scores(predict, metadata, table, batch_size)
    train_targets, train_masks = encode_targets(as_table(splits["train"], PRIOR_ROWS), metadata)
    targets, masks = encode_targets(table, metadata)
    priors = prior_predictions(metadata, train_targets, train_masks, rows)
    prior_scores = score_tasks(priors, targets, masks, metadata)["tasks"]
    health = {
        "split": "validation",
        "rows": rows,
        "dead_units": dead_units(predict, metadata, table, batch_size),
        "modality_contribution": modality_contribution(metadata, robustness),
        "label_prior": label_prior_comparison(metadata, robustness["all"], prior_scores),
    }
    health["warnings"] = health_warnings(health)
    return health


def format_health(health: dict) -> str:
    """The run log's block: dead units per encoder, then the task × modality contributions."""
    lines = [f"training health ({health['split']} split, {health['rows']} rows)"]
    if health.get("dead_units"):
        cells = ", ".join(f"{m} {u['dead']}/{u['units']}" for m, u in health["dead_units"].items())
        lines.append(f"  dead encoder units: {cells}")
    for task, contribution in health.get("modality_contribution", {}).items():
        prior = health["label_prior"][task]
        drops = ", ".join(f"{m} {'n/a' if d is None else f'{d:+.3f}'}" for m, d in contribution["drop"].items())
        model, base = prior["model"].get(prior["metric"]), prior["prior"].get(prior["metric"])
        shown = "n/a" if model is None else f"{model:.3f}"
        shown_prior = "n/a" if base is None else f"{base:.3f}"
        head = f"  {task}: {contribution['metric']} {shown} (label prior: {shown_prior})"
        lines.append(f"{head}; drop when removed: {drops}")
    return "\n".join(lines)


def check_health(predict, splits, metadata, batch_size: int) -> dict | None:
    """`health.training_health`, printed with its warnings; a failure to compute it is one warning line."""
    try:
        with data_errors():
            health = training_health(predict, splits, metadata, batch_size)
    except Exception as error:  # a diagnostic must never fail a finished training run
        print(f"warning: training health not computed ({type(error).__name__}: {error})")
        return None
    if health is not None:
        print(format_health(health))
        for line in health["warnings"]:
            print(line)
    return health
