"""What a trained model does with its inputs: mean gate weights per task and expert, mixing weights.

- MMoE / PLE: the mean softmax gate weight of each task over each expert on a
  data split (which experts each task uses);
- cross-stitch: the learned T×T mixing matrices;
- weighted / late fusion: the modality weights; gated / attention fusion:
  the mean per-example modality weights on the split.

Reads a `.keras` checkpoint in a run folder (the export holds only the
serving graph).
"""

from __future__ import annotations

import numpy as np


def gate_summary(network, preprocessor, table: dict[str, np.ndarray], batch_size: int = 256) -> dict:
    """Mean gate weight per task and expert (`{task: {expert: weight}}`), or {} if the model has no gates."""
    import keras

    from keras_mtmm.data.pipeline import make_input_dataset

    sharing = _layer(network, "sharing")
    if sharing is None or not hasattr(sharing, "gate_weights"):
        return {}
    fused_model = keras.Model(network.inputs, network.get_layer("fusion").output)
    dataset = make_input_dataset(preprocessor, preprocessor.raw_inputs(table), batch_size)
    sums: dict[str, np.ndarray] = {}
    rows = 0
    for batch in dataset:
        gates = sharing.gate_weights(fused_model(batch, training=False))
        for task, values in gates.items():
            values = np.asarray(keras.ops.convert_to_numpy(values))
            sums[task] = sums.get(task, 0) + values.sum(axis=0)
        rows += int(next(iter(batch.values())).shape[0])
    summary = {}
    for task, total in sums.items():
        names = sharing.expert_names(task)
        summary[task] = {name: float(value / rows) for name, value in zip(names, total)}
    return summary


def fusion_summary(network, preprocessor, table: dict[str, np.ndarray], batch_size: int = 256) -> dict:
    """Mean per-example modality weights of gated / attention fusion on a split (`{modality: weight}`)."""
    import keras

    from keras_mtmm.data.pipeline import make_input_dataset

    fusion = _layer(network, "fusion")
    method = getattr(fusion, "gate_values", None) or getattr(fusion, "attention_weights", None)
    if method is None:
        return {}
    encoded = keras.Model(network.inputs, fusion.input)
    dataset = make_input_dataset(preprocessor, preprocessor.raw_inputs(table), batch_size)
    total, rows = 0, 0
    for batch in dataset:
        weights = np.asarray(keras.ops.convert_to_numpy(method(encoded(batch, training=False))))
        total = total + weights.sum(axis=0)
        rows += weights.shape[0]
    return {name: float(value / rows) for name, value in zip(preprocessor.modalities, total)}


def mixing_summary(network) -> dict:
    """Cross-stitch matrices and fusion modality weights, where the model has them."""
    summary: dict = {}
    sharing = _layer(network, "sharing")
    if sharing is not None and hasattr(sharing, "stitch_matrices"):
        summary["cross_stitch"] = [np.asarray(m).round(4).tolist() for m in sharing.stitch_matrices()]
    fusion = {}
    for layer in network.layers:
        if layer.name.startswith("fusion") and hasattr(layer, "current_weights"):
            fusion[layer.name] = [float(w) for w in layer.current_weights()]
    if fusion:
        summary["fusion_weights"] = fusion
    return summary


def format_gates(summary: dict) -> str:
    """A task × expert table of mean gate weights."""
    if not summary:
        return "no gates (the sharing type has none)"
    experts = list(dict.fromkeys(name for values in summary.values() for name in values))
    width = max(10, *(len(name) + 1 for name in experts))
    lines = ["mean gate weight (task × expert)", f"  {'task':<14}" + "".join(f"{name:>{width}}" for name in experts)]
    for task, values in summary.items():
        cells = "".join(f"{values[name]:>{width}.3f}" if name in values else f"{'-':>{width}}" for name in experts)
        lines.append(f"  {task:<14}{cells}")
    return "\n".join(lines)


def _layer(network, name: str):
    try:
        return network.get_layer(name)
    except ValueError:
        return None
