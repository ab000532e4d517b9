"""DSelect-k: the smooth-step and selectors against hand values, the layer against NumPy, its losses,
a known-answer selection in three seeds, the config, and one run through train / inspect / export."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.config.schema import SharingConfig
from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.sharing import DSelectK, build_sharing
from keras_mtmm.layers.sharing.dselect_k import binary_codes, selector_outputs, smooth_step
from keras_mtmm.training.run import train
from tests.conftest import DEMO_CONFIG
from tests.support.layer_round_trip import check_round_trips
from tests.weighting.test_sharing_weighting_matrix import TWO_BY_TWO

BATCH, WIDTH = 4, 5


def _np(value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def _randomize(layer, seed=1) -> None:
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(scale=0.6, size=weight.shape).astype(np.float32))


# ---------------------------------------------------------------------------
# The smooth-step (Eq. 4) and the single-expert selectors


@pytest.mark.parametrize("gamma", [1.0, 2.0, 0.1])
def test_smooth_step_hand_values(gamma):
    # 0 below -γ/2, 1 above γ/2; in between -2x³/γ³ + 3x/(2γ) + 1/2: s(±γ/4) = 1/2 ± (3/8 - 1/32).
    x = np.array([-3, -0.5, -0.25, 0.0, 0.25, 0.5, 3], np.float32) * gamma
    expected = [0.0, 0.0, 0.15625, 0.5, 0.84375, 1.0, 1.0]
    np.testing.assert_allclose(_np(smooth_step(x, gamma)), expected, atol=1e-6)
    inside = np.linspace(-gamma / 2, gamma / 2, 41, dtype=np.float32)
    cubic = -2 * inside**3 / gamma**3 + 3 * inside / (2 * gamma) + 0.5
    np.testing.assert_allclose(_np(smooth_step(inside, gamma)), cubic, atol=1e-6)
    np.testing.assert_allclose(_np(smooth_step(inside, gamma)) + _np(smooth_step(-inside, gamma)), 1.0, atol=1e-6)
    # Continuously differentiable: slope 3/(2γ) at 0, 0 at ±γ/2 and outside.
    points = tf.constant([0.0, -gamma / 2, gamma / 2, 2 * gamma])
    with tf.GradientTape() as tape:
        tape.watch(points)
        values = smooth_step(points, gamma)
    np.testing.assert_allclose(tape.gradient(values, points).numpy(), [1.5 / gamma, 0, 0, 0], atol=1e-5)


def test_binary_codes_are_the_experts_numbers_in_binary():
    np.testing.assert_array_equal(binary_codes(5), [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(binary_codes(2), [[0], [1]])
    assert binary_codes(8).shape == (8, 3) and binary_codes(9).shape == (9, 4)


def _selectors_numpy(z, codes, gamma):
    s = np.clip(-2 * z**3 / gamma**3 + 3 * z / (2 * gamma) + 0.5, 0, 1)
    s = np.where(z <= -gamma / 2, 0.0, np.where(z >= gamma / 2, 1.0, s))
    return np.stack([np.prod(np.where(code == 1, s, 1 - s), axis=-1) for code in codes], axis=-1)


def test_selectors_sum_to_one_and_are_one_hot_when_saturated():
    rng = np.random.default_rng(0)
    codes = binary_codes(8)
    z = rng.uniform(-0.45, 0.45, size=(3, 2, 3)).astype(np.float32)  # [T, k, m], no step saturated
    r = _np(selector_outputs(z, codes, 1.0))
    assert r.shape == (3, 2, 8)
    np.testing.assert_allclose(r, _selectors_numpy(z, codes, 1.0), atol=1e-6)
    np.testing.assert_allclose(r.sum(axis=-1), 1.0, atol=1e-6)
    assert (r > 0).all() and (r < 1).all()
    # Saturated steps (|z| >= γ/2): exactly one expert, the one whose code is the steps' bits.
    saturated = np.array([[1.0, -1.0, 0.5], [-0.7, -3.0, -0.5]], np.float32)  # bits 101 = 5, 000 = 0
    np.testing.assert_array_equal(_np(selector_outputs(saturated, codes, 1.0)), np.eye(8)[[5, 0]])
    # E = 5 of 8 codes: the weights of the 5 real experts sum to at most 1 (less the unreachable codes').
    r5 = _np(selector_outputs(z, binary_codes(5), 1.0))
    np.testing.assert_allclose(r5, r[..., :5], atol=1e-7)
    assert (r5.sum(axis=-1) < 1).all()


# ---------------------------------------------------------------------------
# The layer against NumPy; its losses


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


@pytest.mark.parametrize("per_example", [False, True])
def test_layer_equals_a_numpy_computation(per_example):
    """out_t = tower_t(Σ_e g_te · expert_e(x)), g_t = Σ_i softmax(w_t)_i r(z_ti); z, w static or linear in x."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(2).normal(size=(BATCH, WIDTH)).astype(np.float32)
    layer = DSelectK(["a", "b"], 5, 3, expert_units=[3], tower_units=[2], gamma=2.0, per_example=per_example)
    layer(x)
    _randomize(layer)
    kernel, bias = _np(layer.expert_kernels[0]), _np(layer.expert_biases[0])
    experts = np.stack([np.maximum(x @ kernel[e] + bias[e], 0) for e in range(5)], axis=1)  # [B, E, D]
    outputs, gates = layer(x), layer.gate_weights(x)
    for t, task in enumerate(["a", "b"]):
        if per_example:
            z = np.einsum("bi,ikm->bkm", x, _np(layer.z_kernel)[t]) + _np(layer.z_bias)[t]
            w = x @ _np(layer.w_kernel)[t] + _np(layer.w_bias)[t]
        else:
            z, w = np.broadcast_to(_np(layer.z_logits)[t], (BATCH, 3, 3)), np.tile(_np(layer.w_logits)[t], (BATCH, 1))
        softmax = np.exp(w) / np.exp(w).sum(axis=-1, keepdims=True)
        gate = np.einsum("bk,bke->be", softmax, _selectors_numpy(z, binary_codes(5), 2.0))
        np.testing.assert_allclose(_np(gates[task]), gate, atol=1e-6)
        dense = layer.towers[task].dense_layers[0]
        expected = np.maximum(np.einsum("be,bed->bd", gate, experts) @ _np(dense.kernel) + _np(dense.bias), 0)
        np.testing.assert_allclose(_np(outputs[task]), expected, rtol=1e-5, atol=1e-5)
    assert np.abs(_np(outputs["a"])).sum() > 0


@pytest.mark.parametrize("num_experts", [4, 5])
def test_losses_are_the_entropy_and_reachability_terms_in_training_only(num_experts):
    keras.utils.set_random_seed(0)
    x = np.ones((BATCH, WIDTH), np.float32)
    layer = DSelectK(["a", "b"], num_experts, 2, expert_units=[3], tower_units=[], entropy_weight=0.3)
    layer(x)
    layer.z_logits.assign(np.random.default_rng(1).uniform(-0.6, 0.6, size=layer.z_logits.shape).astype(np.float32))
    r = _selectors_numpy(_np(layer.z_logits), binary_codes(num_experts), 1.0)  # [T, k, E]
    entropy = -np.sum(r * np.log(r + 1e-6))
    reachability = np.sum(1 / r.sum(axis=-1) - 1)
    assert (reachability > 0.05) == (num_experts == 5)  # 4 = 2²: every code is an expert
    layer(x, training=False)
    assert layer.losses == []
    layer(x, training=True)
    expected = 0.3 * entropy + (reachability if num_experts == 5 else 0.0)
    np.testing.assert_allclose(float(_np(sum(layer.losses))), expected, rtol=1e-5)


def _known_answer_run(seed: int):
    """Frozen random experts; task a's target is 0.7·expert_p + 0.3·expert_q, task b's is expert_r."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1024, 6)).astype(np.float32)
    layer = DSelectK(["a", "b"], 4, 2, expert_units=[8], tower_units=[], entropy_weight=0.1, name="sharing")
    layer(x[:2])
    for variable in layer.expert_kernels + layer.expert_biases:
        variable.trainable = False
    experts = _np(layer._experts(x))
    (p, q), r = rng.permutation(4)[:2], int(rng.integers(4))
    targets = {"a": 0.7 * experts[:, p] + 0.3 * experts[:, q], "b": experts[:, r]}
    inputs = keras.Input((6,))
    model = keras.Model(inputs, layer(inputs))
    model.compile(keras.optimizers.Adam(0.05), loss={"a": "mse", "b": "mse"})
    before = model.evaluate(x, targets, verbose=0, return_dict=True)
    model.fit(x, targets, batch_size=64, epochs=10, verbose=0)
    after = model.evaluate(x, targets, verbose=0, return_dict=True)
    best_single = min(float(np.mean((targets["a"] - experts[:, e]) ** 2)) for e in range(4))
    return layer, (f"expert_{p}", f"expert_{q}", f"expert_{r}"), before, after, best_single


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gates_learn_the_known_experts_and_use_at_most_k(seed):
    """With the entropy term the two selectors of task a may land on the same expert (its gate then uses
    one expert, p, the target's larger part): at least as good as the best single expert, never worse."""
    layer, (p, q, r), before, after, best_single = _known_answer_run(seed)
    selected = layer.selected_experts()
    assert all(entry["saturated"] for entry in selected.values()), selected  # every step at 0 or 1
    assert selected["b"]["experts"] == {r: pytest.approx(1.0)}
    used = selected["a"]["experts"]
    assert len(used) <= 2 and p in used and set(used) <= {p, q}, (used, p, q)
    assert after["b_loss"] < 1e-6 < before["b_loss"]
    assert after["a_loss"] <= best_single * 1.01 + 1e-6 < before["a_loss"]
    gates = _np(layer.gate_weights(np.zeros((1, 6), np.float32))["a"])[0]
    assert np.count_nonzero(gates) <= 2  # exactly, not just above a threshold


# ---------------------------------------------------------------------------
# Serialization, config, build_sharing


@pytest.mark.parametrize("per_example", [False, True])
def test_config_and_keras_file_round_trips(per_example, tmp_path):
    x = np.random.default_rng(0).normal(size=(BATCH, WIDTH)).astype(np.float32)

    def factory():
        return DSelectK(
            ["a", "b"], 6, 2, [4], [3], gamma=0.5, entropy_weight=0.2, per_example=per_example, activation="gelu"
        )

    layer = check_round_trips(factory, {"features": x}, tmp_path, randomize=_randomize)
    config = layer.get_config()
    assert {k: config[k] for k in ("num_selected", "gamma", "entropy_weight", "per_example")} == {
        "num_selected": 2,
        "gamma": 0.5,
        "entropy_weight": 0.2,
        "per_example": per_example,
    }


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda: DSelectK(["a"], 1, 1, [4], []), "num_experts"),
        (lambda: DSelectK(["a"], 4, 0, [4], []), "num_selected"),
        (lambda: DSelectK(["a"], 4, 5, [4], []), "num_selected"),
        (lambda: DSelectK(["a"], 4, 2, [4], [], gamma=0.0), "gamma"),
        (lambda: DSelectK(["a"], 4, 2, [4], [], entropy_weight=-1.0), "entropy_weight"),
    ],
)
def test_constructor_validation_names_the_argument(factory, argument):
    with pytest.raises(ValueError, match=argument):
        factory()


def test_build_sharing_passes_the_config():
    sharing = SharingConfig.of(
        type="dselect_k", num_experts=6, dselect_k=3, dselect_gamma=0.5, dselect_entropy_weight=0.0, expert_units=[5]
    )
    layer = build_sharing(sharing, ["x", "y"], name="sharing")
    config = layer.get_config()
    assert type(layer) is DSelectK and config["name"] == "sharing"
    assert (config["num_experts"], config["num_selected"], config["gamma"], config["entropy_weight"]) == (6, 3, 0.5, 0)
    assert config["per_example"] is False and config["activation"] == "gelu"


@pytest.mark.parametrize(
    ("sharing", "where"),
    [
        ({"type": "dselect_k", "num_experts": 1}, "sharing.num_experts"),
        ({"type": "dselect_k", "num_experts": 4, "dselect_k": 5}, "sharing.dselect_k"),
        ({"type": "dselect_k", "dselect_k": 0}, "sharing.dselect_k"),
        ({"type": "dselect_k", "dselect_gamma": 0}, "sharing.dselect_gamma"),
        ({"type": "dselect_k", "dselect_entropy_weight": -0.1}, "sharing.dselect_entropy_weight"),
        ({"type": "dselect_k", "expert_units": []}, "sharing.expert_units"),
        ({"type": "mmoe", "dselect_k": 3}, "sharing.dselect_k"),
        ({"type": "hard", "dselect_per_example": True}, "sharing.dselect_per_example"),
    ],
)
def test_config_errors_name_the_key(sharing, where):
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["sharing"].update(sharing)
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert caught.value.where == where


# ---------------------------------------------------------------------------
# End to end: train 2 steps, reload best.keras, export, `mtmm inspect`


def test_trains_reloads_exports_and_inspect_reports_the_experts(tiny_config_factory, tmp_path, capsys):
    from keras_mtmm.cli.commands import main
    from keras_mtmm.evaluation.inspection import gate_summary
    from keras_mtmm.run_folder import load_checkpoint

    config = tiny_config_factory(*TWO_BY_TWO, "sharing.type=dselect_k", "sharing.num_experts=4")
    result = train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "models", verbose=0)
    layer = result.model.get_layer("sharing")
    assert type(layer) is DSelectK and layer.num_selected == 2
    assert np.isfinite(result.history["loss"]).all()
    raw = result.preprocessor.raw_inputs(load_splits(config)["test"])
    features = result.preprocessor.transform(raw)
    expected = result.model.predict(features, verbose=0)
    reloaded = load_checkpoint(result.run_dir / "best.keras").network.predict(features, verbose=0)
    serving = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    served = serving(**{name: tf.constant(values) for name, values in raw.items()})
    for task in ("premium", "price"):
        assert np.abs(expected[task]).sum() > 0
        np.testing.assert_allclose(reloaded[task], expected[task], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(served[task].numpy(), expected[task], rtol=1e-5, atol=1e-5)

    # The mean gates on a split are the static gates; `mtmm inspect` lists each task's experts.
    table = load_splits(config)["validation"]
    summary = gate_summary(result.model, result.preprocessor, table)
    static = {task: _np(g)[0] for task, g in layer.gate_weights(np.zeros((1, 1), np.float32)).items()}
    for task in ("premium", "price"):
        np.testing.assert_allclose(list(summary[task].values()), static[task], atol=1e-6)
    output = tmp_path / "inspect.json"
    assert main(["inspect", "--model", str(result.run_dir / "best.keras"), "--output", str(output)]) == 0
    shown = capsys.readouterr().out
    assert "experts each task uses" in shown and "premium" in shown
    selected = json.loads(output.read_text())["selected_experts"]
    assert set(selected) == {"premium", "price"}
    for task, entry in selected.items():
        assert entry["experts"] == {
            f"expert_{e}": pytest.approx(float(w), abs=1e-6) for e, w in enumerate(static[task]) if w > 1e-3
        }
