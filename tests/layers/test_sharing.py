"""The multi-task sharing layers (MMoE, PLE/CGC, cross-stitch): round trips, NumPy references, end to end."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.config.schema import SharingConfig
from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.sharing import PLE, CrossStitch, HardSharing, MMoE, build_sharing
from tests.conftest import DEMO_CONFIG
from tests.support.layer_round_trip import check_round_trips

BATCH = 4
WIDTH = 5


def _float(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _np(value) -> np.ndarray:
    return keras.ops.convert_to_numpy(value)


def _randomize(layer, seed=1) -> None:
    """Give every weight (zero biases, the stitch matrices' init) random values, so a lost weight would show."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        if weight.path.endswith("bias"):  # positive biases keep the small ReLU layers from dying
            values = rng.uniform(0.1, 0.6, size=weight.shape)
        else:
            values = rng.normal(scale=0.6, size=weight.shape)
        weight.assign(values.astype(np.float32))


def _relu(x):
    return np.maximum(x, 0.0)


def _softmax(logits):
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def _tower_numpy(tower, h):
    for dense in tower.dense_layers:
        h = _relu(h @ _np(dense.kernel) + _np(dense.bias))
    return h


def _mlp_numpy(x, kernels, biases):
    for kernel, bias in zip(kernels, biases):
        x = _relu(x @ kernel + bias)
    return x


def _assert_not_trivial(outputs: dict):
    """Guard against comparing all-zero outputs (every ReLU dead), which would prove nothing."""
    for task, value in outputs.items():
        assert np.abs(np.asarray(value)).sum() > 0, task


def _assert_outputs_equal(got: dict, expected: dict, atol=1e-6):
    assert sorted(got) == sorted(expected)
    for task in expected:
        np.testing.assert_allclose(np.asarray(got[task]), np.asarray(expected[task]), atol=atol, err_msg=task)


# ---------------------------------------------------------------------------
# Round trips, for every layer and the PLE variants

CASES = {
    "mmoe": lambda: MMoE(["shape", "price"], num_experts=3, expert_units=[6, 4], tower_units=[3], dropout=0.1),
    "mmoe_no_tower": lambda: MMoE(["a", "b", "c"], num_experts=2, expert_units=[4], tower_units=[]),
    "cgc": lambda: PLE(
        ["shape", "price"], 1, num_shared_experts=2, num_task_experts=1, expert_units=[4], tower_units=[3]
    ),
    "ple_2_levels": lambda: PLE(
        ["shape", "price"],
        2,
        num_shared_experts=1,
        num_task_experts=2,
        expert_units=[6, 4],
        tower_units=[3],
        dropout=0.1,
    ),
    "ple_no_task_experts": lambda: PLE(
        ["a", "b"], 2, num_shared_experts=2, num_task_experts=0, expert_units=[4], tower_units=[3]
    ),
    "cgc_no_shared_experts": lambda: PLE(
        ["a", "b"], 1, num_shared_experts=0, num_task_experts=2, expert_units=[4], tower_units=[]
    ),
    "cross_stitch": lambda: CrossStitch(
        ["shape", "price", "premium"], column_units=[6, 4], tower_units=[3], dropout=0.1
    ),
    "cross_stitch_one_task": lambda: CrossStitch(["a"], column_units=[4], tower_units=[3], stitch_init=0.5),
    "hard_gelu": lambda: HardSharing(["a", "b"], shared_units=[6], tower_units=[3], activation="gelu"),
    "mmoe_silu": lambda: MMoE(["a", "b"], num_experts=2, expert_units=[4], tower_units=[3], activation="silu"),
    "ple_gelu": lambda: PLE(["a", "b"], 2, 1, 1, expert_units=[4], tower_units=[3], activation="gelu"),
    "cross_stitch_gelu": lambda: CrossStitch(["a", "b"], column_units=[4], tower_units=[3], activation="gelu"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_and_keras_file_round_trips(case, tmp_path):
    x = _float((BATCH, WIDTH))
    layer = check_round_trips(CASES[case], {"features": x}, tmp_path, randomize=_randomize)
    declared = layer.compute_output_shape((None, WIDTH))
    assert {task: value.shape[1:] for task, value in layer(x).items()} == {t: s[1:] for t, s in declared.items()}


def test_layers_have_one_output_per_task_and_distinct_towers():
    keras.utils.set_random_seed(0)
    x = _float((BATCH, WIDTH))
    for layer in (
        MMoE(["a", "b"], num_experts=2, expert_units=[4], tower_units=[3]),
        PLE(["a", "b"], 1, num_shared_experts=1, num_task_experts=1, expert_units=[4], tower_units=[3]),
        CrossStitch(["a", "b"], column_units=[4], tower_units=[3]),
    ):
        layer(x)
        _randomize(layer)
        outputs = {task: _np(value) for task, value in layer(x).items()}
        assert {task: value.shape for task, value in outputs.items()} == {"a": (BATCH, 3), "b": (BATCH, 3)}
        assert not np.allclose(outputs["a"], outputs["b"]), type(layer).__name__


# ---------------------------------------------------------------------------
# MMoE


def test_mmoe_equals_a_numpy_computation_for_two_experts():
    """E=2, one expert layer, no tower: out_t = Σ_e softmax(x G_t + c_t)_e · relu(x W_e + b_e)."""
    keras.utils.set_random_seed(0)
    x = _float((BATCH, WIDTH))
    mmoe = MMoE(["a", "b"], num_experts=2, expert_units=[3], tower_units=[])
    mmoe(x)
    _randomize(mmoe)
    kernel, bias = _np(mmoe.expert_kernels[0]), _np(mmoe.expert_biases[0])
    assert kernel.shape == (2, WIDTH, 3) and bias.shape == (2, 3)
    experts = [_relu(x @ kernel[e] + bias[e]) for e in range(2)]
    gate_kernel, gate_bias = _np(mmoe.gate_kernel), _np(mmoe.gate_bias)
    outputs = mmoe(x)
    for t, task in enumerate(["a", "b"]):
        gates = _softmax(x @ gate_kernel[t] + gate_bias[t])
        expected = gates[:, :1] * experts[0] + gates[:, 1:] * experts[1]
        np.testing.assert_allclose(_np(outputs[task]), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(_np(mmoe.gate_weights(x)[task]), gates, rtol=1e-5, atol=1e-6)
    _assert_not_trivial(outputs)


def test_mmoe_with_gelu_equals_a_numpy_computation():
    """The same formula with GELU (exact, erf form) on the experts and the tower."""
    import math

    keras.utils.set_random_seed(0)
    x = _float((BATCH, WIDTH))
    mmoe = MMoE(["a"], num_experts=2, expert_units=[3], tower_units=[2], activation="gelu")
    mmoe(x)
    _randomize(mmoe)
    gelu = np.vectorize(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))))
    kernel, bias = _np(mmoe.expert_kernels[0]), _np(mmoe.expert_biases[0])
    experts = [gelu(x @ kernel[e] + bias[e]) for e in range(2)]
    gates = _softmax(x @ _np(mmoe.gate_kernel)[0] + _np(mmoe.gate_bias)[0])
    mixture = gates[:, :1] * experts[0] + gates[:, 1:] * experts[1]
    dense = mmoe.towers["a"].dense_layers[0]
    expected = gelu(mixture @ _np(dense.kernel) + _np(dense.bias))
    np.testing.assert_allclose(_np(mmoe(x)["a"]), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["hard_gelu", "mmoe", "ple_gelu", "cross_stitch_gelu"])
def test_a_config_saved_before_the_activation_option_loads_as_relu(case):
    # Models saved before `activation` existed were ReLU models: they must load as such.
    config = CASES[case]().get_config()
    config.pop("activation")
    restored = CASES[case]().__class__.from_config(config)
    assert restored.activation == "relu"


def test_mmoe_gates_are_per_task_distributions_over_experts():
    keras.utils.set_random_seed(0)
    x = _float((BATCH, WIDTH))
    mmoe = MMoE(["a", "b", "c"], num_experts=4, expert_units=[3], tower_units=[2])
    mmoe(x)
    assert mmoe.expert_names(mmoe.task_names[0]) == ["expert_0", "expert_1", "expert_2", "expert_3"]
    rng = np.random.default_rng(3)
    same = rng.normal(size=(WIDTH, 4)).astype(np.float32)
    mmoe.gate_kernel.assign(np.stack([same, same, same]))
    gates = {task: _np(value) for task, value in mmoe.gate_weights(x).items()}
    np.testing.assert_allclose(gates["a"], gates["c"], atol=1e-7)  # equal weights, equal gates

    mmoe.gate_kernel.assign(rng.normal(size=(3, WIDTH, 4)).astype(np.float32))
    gates = {task: _np(value) for task, value in mmoe.gate_weights(x).items()}
    for task, value in gates.items():
        assert value.shape == (BATCH, 4), task
        assert np.all(value > 0)
        np.testing.assert_allclose(value.sum(axis=-1), 1.0, atol=1e-6)
    assert not np.allclose(gates["a"], gates["b"], atol=1e-3)
    assert not np.allclose(gates["b"], gates["c"], atol=1e-3)
    assert not np.allclose(gates["a"][0], gates["a"][1], atol=1e-3), "gates depend on the example"


def _mmoe_parameters(input_dim, num_experts, expert_units, num_tasks, tower_units):
    widths = [input_dim, *expert_units]
    experts = num_experts * sum(a * b + b for a, b in zip(widths, widths[1:]))
    gates = num_tasks * (input_dim * num_experts + num_experts)
    tower_widths = [expert_units[-1], *tower_units]
    towers = num_tasks * sum(a * b + b for a, b in zip(tower_widths, tower_widths[1:]))
    return experts + gates + towers


@pytest.mark.parametrize(
    ("input_dim", "num_experts", "expert_units", "tasks", "tower_units", "count"),
    [
        # 8·(100·16+16) + 2·(100·8+8) + 2·(16·8+8) = 12928 + 1616 + 272
        (100, 8, [16], ["a", "b"], [8], 14816),
        (7, 3, [5, 4], ["a", "b", "c"], [2, 2], None),
        (6, 1, [2], ["a"], [], None),
    ],
)
def test_mmoe_parameter_count(input_dim, num_experts, expert_units, tasks, tower_units, count):
    mmoe = MMoE(tasks, num_experts=num_experts, expert_units=expert_units, tower_units=tower_units)
    mmoe.build((None, input_dim))
    expected = _mmoe_parameters(input_dim, num_experts, expert_units, len(tasks), tower_units)
    assert mmoe.count_params() == expected
    if count is not None:
        assert expected == count


# ---------------------------------------------------------------------------
# PLE / CGC


def _ple_numpy(layer, x):
    """PLE by the paper, one expert and one gate at a time, from the layer's weights."""
    tasks = layer.task_names
    k, s = layer.num_task_experts, layer.num_shared_experts
    task_inputs, shared_input = [x] * len(tasks), x
    for weights in layer.levels:
        task_kernels = [_np(w) for w in weights["task_kernels"]]
        task_biases = [_np(w) for w in weights["task_biases"]]
        shared_kernels = [_np(w) for w in weights["shared_kernels"]]
        shared_biases = [_np(w) for w in weights["shared_biases"]]
        task_experts = [
            [
                _mlp_numpy(task_inputs[t], [w[t, j] for w in task_kernels], [b[t, j] for b in task_biases])
                for j in range(k)
            ]
            for t in range(len(tasks))
        ]
        shared_experts = [
            _mlp_numpy(shared_input, [w[j] for w in shared_kernels], [b[j] for b in shared_biases]) for j in range(s)
        ]
        gate_kernel, gate_bias = (_np(w) for w in weights["task_gate"])
        next_inputs = []
        for t in range(len(tasks)):
            gates = _softmax(task_inputs[t] @ gate_kernel[t] + gate_bias[t])
            candidates = task_experts[t] + shared_experts
            next_inputs.append(sum(gates[:, i : i + 1] * expert for i, expert in enumerate(candidates)))
        if "shared_gate" in weights:
            kernel, bias = (_np(w) for w in weights["shared_gate"])
            gates = _softmax(shared_input @ kernel + bias)
            candidates = [expert for per_task in task_experts for expert in per_task] + shared_experts
            shared_input = sum(gates[:, i : i + 1] * expert for i, expert in enumerate(candidates))
        task_inputs = next_inputs
    return {task: _tower_numpy(layer.towers[task], task_inputs[t]) for t, task in enumerate(tasks)}


@pytest.mark.parametrize(
    ("num_levels", "num_shared", "num_task", "expert_units"),
    [(1, 2, 1, [3]), (2, 1, 2, [4, 3]), (3, 2, 1, [3]), (2, 2, 0, [3]), (1, 0, 2, [3])],
)
def test_ple_equals_a_numpy_computation(num_levels, num_shared, num_task, expert_units):
    keras.utils.set_random_seed(0)
    x = _float((BATCH, WIDTH))
    ple = PLE(["a", "b", "c"], num_levels, num_shared, num_task, expert_units=expert_units, tower_units=[2])
    ple(x)
    _randomize(ple)
    got = {task: _np(value) for task, value in ple(x).items()}
    _assert_not_trivial(got)
    _assert_outputs_equal(got, _ple_numpy(ple, x), atol=1e-5)


def test_ple_gates_cover_own_and_shared_experts():
    keras.utils.set_random_seed(0)
    x = _float((BATCH, WIDTH))
    ple = PLE(["a", "b"], 2, num_shared_experts=3, num_task_experts=2, expert_units=[4], tower_units=[2])
    ple(x)
    _randomize(ple)
    gates = {task: _np(value) for task, value in ple.gate_weights(x).items()}
    assert ple.expert_names("b") == ["b_0", "b_1", "shared_0", "shared_1", "shared_2"]
    for task, value in gates.items():
        assert value.shape == (BATCH, 2 + 3), task
        np.testing.assert_allclose(value.sum(axis=-1), 1.0, atol=1e-6)
    assert not np.allclose(gates["a"], gates["b"], atol=1e-3)
    # The last level's gates read the last level's weights: changing them changes the gates.
    ple.levels[-1]["task_gate"][0].assign(np.zeros((2, 4, 5), np.float32))
    ple.levels[-1]["task_gate"][1].assign(np.log(np.arange(1, 11, dtype=np.float32)).reshape(2, 5))
    np.testing.assert_allclose(_np(ple.gate_weights(x)["a"]), np.tile(np.arange(1, 6) / 15, (BATCH, 1)), atol=1e-6)
    with pytest.raises(ValueError, match="task"):
        ple.expert_names("nope")

    only_shared = PLE(["a", "b"], 1, num_shared_experts=2, num_task_experts=0, expert_units=[4], tower_units=[])
    assert only_shared.expert_names("a") == ["shared_0", "shared_1"]
    assert _np(only_shared.gate_weights(x)["a"]).shape == (BATCH, 2)


def _ple_parameters(input_dim, num_levels, s, k, expert_units, num_tasks, tower_units):
    total = 0
    for level in range(num_levels):
        level_input = input_dim if level == 0 else expert_units[-1]
        widths = [level_input, *expert_units]
        total += (num_tasks * k + s) * sum(a * b + b for a, b in zip(widths, widths[1:]))
        total += num_tasks * (level_input * (k + s) + k + s)
        if level < num_levels - 1:
            total += level_input * (num_tasks * k + s) + num_tasks * k + s
    tower_widths = [expert_units[-1], *tower_units]
    return total + num_tasks * sum(a * b + b for a, b in zip(tower_widths, tower_widths[1:]))


@pytest.mark.parametrize("num_levels", [1, 2, 3])
def test_ple_parameter_count(num_levels):
    ple = PLE(["a", "b"], num_levels, num_shared_experts=2, num_task_experts=1, expert_units=[6, 4], tower_units=[3])
    ple.build((None, 9))
    assert ple.count_params() == _ple_parameters(9, num_levels, 2, 1, [6, 4], 2, [3])


def test_ple_second_level_changes_the_output():
    """Two levels with the one-level model's weights in level 0 and the towers still answer differently."""
    keras.utils.set_random_seed(0)
    x = _float((BATCH, WIDTH))
    kwargs = {"num_shared_experts": 2, "num_task_experts": 1, "expert_units": [4], "tower_units": [3]}
    cgc, ple = PLE(["a", "b"], 1, **kwargs), PLE(["a", "b"], 2, **kwargs)
    cgc(x), ple(x)
    _randomize(cgc)
    for key in ("task_kernels", "task_biases", "shared_kernels", "shared_biases"):
        for source, target in zip(cgc.levels[0][key], ple.levels[0][key]):
            target.assign(source)
    for source, target in zip(cgc.levels[0]["task_gate"], ple.levels[0]["task_gate"]):
        target.assign(source)
    for task in ("a", "b"):
        ple.towers[task].set_weights(cgc.towers[task].get_weights())
    one, two = cgc(x), ple(x)
    _assert_not_trivial(two)
    for task in ("a", "b"):
        assert not np.allclose(_np(one[task]), _np(two[task]), atol=1e-4), task
    # and the level-0 shared gate feeds level 1: moving it moves the output
    before = _np(ple(x)["a"])
    ple.levels[0]["shared_gate"][0].assign(_float((WIDTH, 4), seed=9) * 3)
    assert not np.allclose(_np(ple(x)["a"]), before, atol=1e-5)


# ---------------------------------------------------------------------------
# Cross-stitch


def test_cross_stitch_initial_matrices_match_stitch_init():
    stitch = CrossStitch(["a", "b", "c"], column_units=[4, 3], tower_units=[], stitch_init=0.7)
    stitch.build((None, WIDTH))
    matrices = stitch.stitch_matrices()
    assert len(matrices) == 2
    expected = np.full((3, 3), 0.15, np.float32)
    np.fill_diagonal(expected, 0.7)
    for matrix in matrices:
        np.testing.assert_allclose(matrix, expected, atol=1e-7)
    single = CrossStitch(["a"], column_units=[4], tower_units=[], stitch_init=0.3)
    single.build((None, WIDTH))
    np.testing.assert_array_equal(single.stitch_matrices()[0], [[1.0]])


def _columns_numpy(stitch, x):
    """Cross-stitch by the paper: column layers per task, then h̃_t = Σ_s α[t, s] h_s after every layer."""
    tasks = stitch.task_names
    h = [x] * len(tasks)
    for kernel, bias, alpha in zip(stitch.column_kernels, stitch.column_biases, stitch.stitch_matrices()):
        kernel, bias = _np(kernel), _np(bias)
        layer = [_relu(h[t] @ kernel[t] + bias[t]) for t in range(len(tasks))]
        h = [sum(alpha[t, s] * layer[s] for s in range(len(tasks))) for t in range(len(tasks))]
    return {task: _tower_numpy(stitch.towers[task], h[t]) for t, task in enumerate(tasks)}


def test_cross_stitch_with_identity_is_independent_columns():
    keras.utils.set_random_seed(0)
    x = _float((BATCH, WIDTH))
    stitch = CrossStitch(["a", "b"], column_units=[4, 3], tower_units=[2])
    stitch(x)
    _randomize(stitch)
    for alpha in stitch.stitches:
        alpha.assign(np.eye(2, dtype=np.float32))
    outputs = stitch(x)
    for t, task in enumerate(["a", "b"]):
        h = x
        for kernel, bias in zip(stitch.column_kernels, stitch.column_biases):
            h = _relu(h @ _np(kernel)[t] + _np(bias)[t])
        np.testing.assert_allclose(_np(outputs[task]), _tower_numpy(stitch.towers[task], h), rtol=1e-5, atol=1e-5)
    _assert_not_trivial(outputs)


def test_cross_stitch_mixes_rows_as_targets():
    """α[t, s] is how much task t reads from task s (a transposed α would fail here)."""
    keras.utils.set_random_seed(0)
    x = _float((BATCH, WIDTH))
    stitch = CrossStitch(["a", "b", "c"], column_units=[4, 3], tower_units=[2])
    stitch(x)
    _randomize(stitch)
    got = {task: _np(value) for task, value in stitch(x).items()}
    _assert_not_trivial(got)
    _assert_outputs_equal(got, _columns_numpy(stitch, x), atol=1e-5)


def test_gradients_reach_the_stitch_matrices():
    keras.utils.set_random_seed(0)
    x = _float((8, WIDTH))
    stitch = CrossStitch(["a", "b"], column_units=[4, 3], tower_units=[])
    stitch(x)
    _randomize(stitch, seed=2)
    for alpha in stitch.stitches:
        alpha.assign([[0.9, 0.1], [0.1, 0.9]])
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(keras.ops.square(stitch(x)["a"]))
    gradients = [_np(g) for g in tape.gradient(loss, stitch.stitches)]
    first, last = gradients
    assert first[0, 1] != 0 and last[0, 1] != 0, "task a reads task b's column through α[a, b]"
    assert first[1, 0] != 0, "task b's stitched first layer feeds task a through the second stitch"
    np.testing.assert_array_equal(last[1], [0.0, 0.0])  # task b's last row cannot affect task a


# ---------------------------------------------------------------------------
# Argument validation


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda: MMoE(["a"], num_experts=0, expert_units=[4], tower_units=[]), "num_experts"),
        (lambda: MMoE(["a"], num_experts=2.5, expert_units=[4], tower_units=[]), "num_experts"),
        (lambda: MMoE(["a"], num_experts=2, expert_units=[], tower_units=[]), "expert_units"),
        (lambda: MMoE(["a"], num_experts=2, expert_units=[4, 0], tower_units=[]), "expert_units"),
        (lambda: MMoE(["a"], num_experts=2, expert_units=[4], tower_units=[-1]), "tower_units"),
        (lambda: MMoE(["a", "a"], num_experts=2, expert_units=[4], tower_units=[]), "task_names"),
        (lambda: MMoE([], num_experts=2, expert_units=[4], tower_units=[]), "task_names"),
        (lambda: MMoE(["a"], num_experts=2, expert_units=[4], tower_units=[], dropout=1.0), "dropout"),
        (lambda: PLE(["a"], 0, 1, 1, expert_units=[4], tower_units=[]), "num_levels"),
        (lambda: PLE(["a"], 1, -1, 1, expert_units=[4], tower_units=[]), "num_shared_experts"),
        (lambda: PLE(["a"], 1, 1, -1, expert_units=[4], tower_units=[]), "num_task_experts"),
        (lambda: PLE(["a"], 1, 0, 0, expert_units=[4], tower_units=[]), "num_task_experts"),
        (lambda: PLE(["a"], 2, 0, 1, expert_units=[4], tower_units=[]), "num_shared_experts"),
        (lambda: PLE(["a"], 1, 1, 1, expert_units=[], tower_units=[]), "expert_units"),
        (lambda: PLE(["b", "a", "b"], 1, 1, 1, expert_units=[4], tower_units=[]), "task_names"),
        (lambda: PLE(["a"], 1, 1, 1, expert_units=[4], tower_units=[], dropout=-0.1), "dropout"),
        (lambda: CrossStitch(["a", "a"], column_units=[4], tower_units=[]), "task_names"),
        (lambda: CrossStitch(["a", "b"], column_units=[], tower_units=[]), "column_units"),
        (lambda: CrossStitch(["a", "b"], column_units=[4], tower_units=[], stitch_init=0.0), "stitch_init"),
        (lambda: CrossStitch(["a", "b"], column_units=[4], tower_units=[], stitch_init=1.5), "stitch_init"),
    ],
)
def test_constructor_validation_names_the_argument(factory, argument):
    with pytest.raises(ValueError, match=argument):
        factory()


# ---------------------------------------------------------------------------
# build_sharing and the config


@pytest.mark.parametrize(
    ("sharing", "layer_class", "expected"),
    [
        (
            SharingConfig.of(type="mmoe", num_experts=3, expert_units=[5, 4], tower_units=[2], dropout=0.2),
            MMoE,
            {"num_experts": 3, "expert_units": [5, 4], "tower_units": [2], "dropout": 0.2},
        ),
        (
            SharingConfig.of(
                type="ple", num_levels=2, num_shared_experts=3, num_task_experts=1, expert_units=[6], tower_units=[]
            ),
            PLE,
            {"num_levels": 2, "num_shared_experts": 3, "num_task_experts": 1, "expert_units": [6], "tower_units": []},
        ),
        (
            SharingConfig.of(type="cross_stitch", shared_units=[7, 3], tower_units=[2], dropout=0.0),
            CrossStitch,
            {"column_units": [7, 3], "tower_units": [2], "dropout": 0.0},
        ),
        (SharingConfig.of(type="hard"), HardSharing, {"activation": "gelu"}),
        (SharingConfig.of(type="mmoe", activation="relu"), MMoE, {"activation": "relu"}),
        (SharingConfig.of(type="ple", activation="silu"), PLE, {"activation": "silu"}),
    ],
)
def test_build_sharing_passes_the_config(sharing, layer_class, expected):
    layer = build_sharing(sharing, ["x", "y"], name="sharing")
    assert type(layer) is layer_class
    config = layer.get_config()
    assert config["name"] == "sharing" and config["task_names"] == ["x", "y"]
    assert {key: config[key] for key in expected} == expected


def _demo_dict() -> dict:
    return yaml.safe_load(DEMO_CONFIG.read_text())


@pytest.mark.parametrize(
    ("sharing", "where"),
    [
        ({"type": "mmoe", "num_experts": 0}, "sharing.num_experts"),
        ({"type": "mmoe", "expert_units": []}, "sharing.expert_units"),
        ({"type": "ple", "num_levels": 0}, "sharing.num_levels"),
        ({"type": "ple", "num_levels": 2, "num_shared_experts": 0}, "sharing.num_shared_experts"),
        ({"type": "cross_stitch", "shared_units": []}, "sharing.shared_units"),
    ],
)
def test_config_errors_name_the_sharing_key(sharing, where):
    raw = _demo_dict()
    raw["sharing"].update(sharing)
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert caught.value.where == where


# ---------------------------------------------------------------------------
# End to end: train, export, serve with plain TensorFlow

END_TO_END = {
    "mmoe": (MMoE, ["sharing.num_experts=2", "sharing.expert_units=[8]"]),
    "ple": (
        PLE,
        [
            "sharing.num_levels=2",
            "sharing.num_shared_experts=1",
            "sharing.num_task_experts=1",
            "sharing.expert_units=[8]",
        ],
    ),
    "cross_stitch": (CrossStitch, ["sharing.shared_units=[8, 8]"]),
}


# PLE and cross-stitch also train, export and reload in the default pairs of
# test_sharing_weighting_matrix.py: their cases here are slow.
@pytest.mark.parametrize(
    "sharing_type",
    [pytest.param(t, marks=pytest.mark.slow) if t in ("ple", "cross_stitch", "mmoe") else t for t in END_TO_END],
)
def test_train_and_serve_end_to_end(sharing_type, tiny_config_factory, tmp_path):
    from keras_mtmm.training.run import train

    layer_class, overrides = END_TO_END[sharing_type]
    config = tiny_config_factory(
        f"sharing.type={sharing_type}",
        "sharing.tower_units=[4]",
        "training.epochs=1",
        "training.steps_per_epoch=2",
        *overrides,
    )
    result = train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "models", verbose=0)
    assert type(result.model.get_layer("sharing")) is layer_class

    raw = result.preprocessor.raw_inputs(load_splits(config)["test"])
    expected = result.model.predict(result.preprocessor.transform(raw), verbose=0)
    _assert_not_trivial(expected)
    serving = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    served = serving(**{name: tf.constant(value) for name, value in raw.items()})
    assert sorted(served) == sorted(config.tasks)
    for task in config.tasks:
        np.testing.assert_allclose(served[task].numpy(), expected[task], rtol=1e-5, atol=1e-5, err_msg=task)
