"""One trace per model: a raw-inputs -> outputs function traced once, for every batch size.

Scoring several models in a row (`mtmm baselines`, `evaluate.py --baselines`)
made one `tf.function` per model from the same Python code. TensorFlow's
frequent-tracing detector counts traces by that code, not by function, so
after five models it printed `... triggered tf.function retracing` warnings,
though each model was traced only once or twice (a last, smaller batch).
Here each model's function is traced once, at its first batch, with the
batch dimension left open; later batches call the concrete function, which
neither retraces nor counts.
"""

from __future__ import annotations


def traced_once(function):
    """`function(raw: dict of tensors) -> outputs`, traced at the first call with an open batch dimension.

    Example:
        >>> run = traced_once(lambda raw: model(preprocessor.transform(raw), training=False))
        >>> outputs = run({"numbers": tf.constant(batch)})   # any batch size, one trace
    """
    import tensorflow as tf

    traced = []

    def run(raw):
        if not traced:
            spec = {name: tf.TensorSpec([None, *value.shape[1:]], value.dtype) for name, value in raw.items()}
            traced.append(tf.function(function).get_concrete_function(spec))
        return traced[0](raw)

    return run
