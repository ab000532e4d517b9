"""What a trained model does with its inputs: mean gate weights per task and expert, mixing weights.

- MMoE / PLE: the mean softmax gate weight of each task over each expert on a
  data split (which experts each task uses);
- cross-stitch: the learned T×T mixing matrices;
- DSelect-k: the experts each task's (static) gate ends up using;
- fusion: the modality weights each task used (weighted, late, gated,
  attention; per task when task-conditioned), averaged over the split's
  examples after leaving out missing modalities; for cross-attention, the
  attention mass each modality's tokens give the others.

Reads a `.keras` checkpoint in a run folder (the export holds only the
serving graph).
"""

from __future__ import annotations

import numpy as np

from keras_mtmm.config.schema import PRESENCE_KEY
from keras_mtmm.data.pipeline import make_input_dataset
from keras_mtmm.models.network import NetworkParts


def gate_summary(network, preprocessor, table: dict[str, np.ndarray], batch_size: int = 256) -> dict:
    """Mean gate weight per task and expert (`{task: {expert: weight}}`), or {} if the model has no gates.

    With task-conditioned fusion each task's gate reads that task's own fused vector.
    """
    import keras

    parts = NetworkParts(network)
    sharing = parts.sharing
    if sharing is None or not hasattr(sharing, "gate_weights"):
        return {}
    fused = parts.fusion.output
    if isinstance(fused, (list, tuple)):  # task-conditioned fusion: Keras flattens its dict (sorted keys)
        fused = keras.tree.pack_sequence_as(dict.fromkeys(network.output), list(fused))
    fused_model = keras.Model(network.inputs, fused)
    sums: dict[str, np.ndarray] = {}
    rows = 0
    for batch in _batches(preprocessor, table, batch_size):
        fused = fused_model(batch, training=False)
        if isinstance(fused, dict):
            gates = {task: sharing.gate_weights(value)[task] for task, value in fused.items()}
        else:
            gates = sharing.gate_weights(fused)
        for task, values in gates.items():
            sums[task] = sums.get(task, 0) + _numpy(values).sum(axis=0)
        rows += int(next(iter(batch.values())).shape[0])
    summary = {}
    for task, total in sums.items():
        names = sharing.expert_names(task)
        summary[task] = {name: float(value / rows) for name, value in zip(names, total)}
    return summary


def fusion_summary(network, preprocessor, table: dict[str, np.ndarray], batch_size: int = 256) -> dict:
    """The modality weights each task actually used, averaged over a split's examples.

    Returns `{task: {modality: mean weight}}` for strategies that weigh
    modalities (`weighted`, `late`, `gated`, `attention`, per task when
    task-conditioned), with the per-example weights after leaving out missing
    modalities (so a modality missing in 30% of the rows shows it). For
    `cross_attention`: `{query modality: {key modality: mean attention mass}}`
    under the key `"cross_attention"`. {} for strategies with no weights
    (`early`, `intermediate`, `low_rank`).
    """
    import keras

    modalities = list(preprocessor.modalities)
    tasks = list(network.output.keys())
    features = [network.get_layer(f"{name}_encoder").output for name in modalities]
    presence = network.get_layer(PRESENCE_KEY).output
    fusion = NetworkParts(network).fusion
    if fusion is not None and hasattr(fusion, "modality_attention"):
        masks = [network.get_layer(f"{name}_token_mask").output for name in modalities]
        arguments = keras.Model(network.inputs, [features, presence, masks])

        def weigh(batch):
            encoded, present, token_masks = arguments(batch, training=False)
            return {"cross_attention": fusion.modality_attention(encoded, present, token_masks)}

        means = _mean_over_split(weigh, preprocessor, table, batch_size)
        matrix = means["cross_attention"]
        return {"cross_attention": {q: dict(zip(modalities, map(float, matrix[i]))) for i, q in enumerate(modalities)}}
    if fusion is not None:
        layers = {task: fusion for task in tasks}
    else:  # late fusion: one layer per task; its weights depend on presence only (features give the batch size)
        layers = {task: NetworkParts(network).task_fusion(task) for task in tasks}
    if not all(layer is not None and hasattr(layer, "modality_weight_values") for layer in layers.values()):
        return {}
    arguments = keras.Model(network.inputs, [features, presence])

    def weigh(batch):
        encoded, present = arguments(batch, training=False)
        weights = {}
        for task, layer in layers.items():
            values = layer.modality_weight_values(_task_features(encoded, task, tasks), present)
            weights[task] = values[task] if isinstance(values, dict) else values
        return weights

    means = _mean_over_split(weigh, preprocessor, table, batch_size)
    return {task: dict(zip(modalities, map(float, values))) for task, values in means.items()}


def _task_features(encoded: list, task: str, tasks: list[str]) -> list:
    """The encoder outputs task `task` is fused from: an encoder with one vector per task (MTAN; Keras
    gives its dict as a list in sorted-key order) contributes that task's."""
    import keras

    def own(value):
        if isinstance(value, dict):
            return value[task]
        if isinstance(value, (list, tuple)):
            return keras.tree.pack_sequence_as(dict.fromkeys(tasks), list(value))[task]
        return value

    return [own(value) for value in encoded]


def _mean_over_split(weigh, preprocessor, table, batch_size: int) -> dict[str, np.ndarray]:
    sums: dict[str, np.ndarray] = {}
    rows = 0
    for batch in _batches(preprocessor, table, batch_size):
        for key, values in weigh(batch).items():
            sums[key] = sums.get(key, 0) + _numpy(values).sum(axis=0)
        rows += int(next(iter(batch.values())).shape[0])
    return {key: total / rows for key, total in sums.items()}


def _batches(preprocessor, table, batch_size: int):
    return make_input_dataset(preprocessor, preprocessor.raw_inputs(table), batch_size)


def _numpy(values) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(values))


def mixing_summary(network) -> dict:
    """Cross-stitch matrices and fusion modality weights, where the model has them."""
    summary: dict = {}
    parts = NetworkParts(network)
    sharing = parts.sharing
    if sharing is not None and hasattr(sharing, "stitch_matrices"):
        summary["cross_stitch"] = [np.asarray(m).round(4).tolist() for m in sharing.stitch_matrices()]
    if sharing is not None and hasattr(sharing, "selected_experts") and sharing.selected_experts():
        summary["selected_experts"] = sharing.selected_experts()
    fusion = {}
    for layer in parts.fusions:
        if hasattr(layer, "current_weights"):
            fusion[layer.name] = [float(w) for w in layer.current_weights()]
    if fusion:
        summary["fusion_weights"] = fusion
    return summary


def format_modality_weights(summary: dict) -> str:
    """A task × modality table of mean fusion weights (or query × key for cross-attention)."""
    if not summary:
        return "no modality weights (the fusion strategy has none)"
    if "cross_attention" in summary:
        rows, title, label = summary["cross_attention"], "mean cross-attention mass (query × key modality)", "query"
    else:
        rows, title, label = summary, "mean modality weight used (task × modality)", "task"
    return _table(title, label, rows)


def format_selected_experts(selected: dict) -> str:
    """One line per task: the experts its DSelect-k gate uses, with their weights."""
    lines = ["experts each task uses (DSelect-k gates; 'still converging': some smooth-step is not yet 0 or 1)"]
    for task, entry in selected.items():
        experts = ", ".join(f"{name} {weight:.3f}" for name, weight in entry["experts"].items())
        lines.append(f"  {task:<14}{experts}{'' if entry['saturated'] else '  (still converging)'}")
    return "\n".join(lines)


def format_gates(summary: dict) -> str:
    """A task × expert table of mean gate weights."""
    if not summary:
        return "no gates (the sharing type has none)"
    return _table("mean gate weight (task × expert)", "task", summary)


def _table(title: str, label: str, rows: dict[str, dict[str, float]]) -> str:
    columns = list(dict.fromkeys(name for values in rows.values() for name in values))
    width = max(10, *(len(name) + 1 for name in columns))
    lines = [title, f"  {label:<14}" + "".join(f"{name:>{width}}" for name in columns)]
    for row, values in rows.items():
        cells = "".join(f"{values[name]:>{width}.3f}" if name in values else f"{'-':>{width}}" for name in columns)
        lines.append(f"  {row:<14}{cells}")
    return "\n".join(lines)
