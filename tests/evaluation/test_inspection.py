"""Gate and mixing summaries on a data split, and `mtmm inspect` on a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_mtmm.data.tables import load_splits
from keras_mtmm.evaluation.inspection import gate_summary, mixing_summary
from keras_mtmm.training.run import train


@pytest.fixture(scope="module")
def mmoe_run(tmp_path_factory, tiny_config_factory):
    config = tiny_config_factory(
        "sharing.type=mmoe",
        "sharing.num_experts=3",
        "sharing.expert_units=[8]",
        "fusion.strategy=weighted",
        "training.epochs=1",
        "training.steps_per_epoch=2",
    )
    folder = tmp_path_factory.mktemp("mmoe")
    return config, train(config, output_dir=folder / "run", export=False, verbose=0)


def test_mean_gates_per_task_sum_to_one_and_match_the_layer(mmoe_run):
    config, result = mmoe_run
    table = load_splits(config)["validation"]
    summary = gate_summary(result.model, result.preprocessor, table, batch_size=7)  # uneven batches on purpose
    assert list(summary) == ["shape", "premium", "price"]
    for weights in summary.values():
        assert list(weights) == ["expert_0", "expert_1", "expert_2"]
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    # Same numbers as the layer's gates on the whole split at once.
    import keras

    fused = keras.Model(result.model.inputs, result.model.get_layer("fusion").output)
    features = result.preprocessor.transform(result.preprocessor.raw_inputs(table))
    gates = result.model.get_layer("sharing").gate_weights(fused(features))
    for task, weights in summary.items():
        np.testing.assert_allclose(list(weights.values()), np.asarray(gates[task]).mean(axis=0), atol=1e-5)
    mixing = mixing_summary(result.model)
    assert sum(mixing["fusion_weights"]["fusion"]) == pytest.approx(1.0, abs=1e-5)


def test_inspect_command_on_a_checkpoint(mmoe_run, tmp_path, capsys):
    from keras_mtmm.cli.commands import main

    _, result = mmoe_run
    output = tmp_path / "gates.json"
    assert main(["inspect", "--model", str(result.run_dir / "best.keras"), "--output", str(output)]) == 0
    shown = capsys.readouterr().out
    assert "expert_2" in shown and "premium" in shown
    saved = json.loads(output.read_text())
    assert saved["split"] == "validation" and set(saved["gates"]) == {"shape", "premium", "price"}


def test_models_without_gates_say_so(tiny_run):
    table = {k: v[:10] for k, v in load_splits(_config(tiny_run))["test"].items()}
    assert gate_summary(tiny_run.model, tiny_run.preprocessor, table) == {}


def _config(run):
    import yaml

    from keras_mtmm.config.loading import config_from_dict

    return config_from_dict(yaml.safe_load((run.run_dir / "config.yaml").read_text()))


@pytest.mark.parametrize("strategy", ["gated"])  # attention and late: the per-task test below
def test_fusion_weights_used_per_task_are_averaged_on_the_split(
    tiny_config_factory, untrained_factory, tmp_path, strategy
):
    from keras_mtmm.evaluation.inspection import fusion_summary

    config = tiny_config_factory(f"fusion.strategy={strategy}")
    model, preprocessor = untrained_factory(config, tmp_path)
    table = load_splits(config)["validation"]
    summary = fusion_summary(model, preprocessor, table, batch_size=5)
    assert list(summary) == ["shape", "premium", "price"]
    assert summary["shape"] == summary["premium"]  # one fusion shared by the tasks
    assert list(summary["shape"]) == ["image", "text", "numeric", "categorical"]
    assert sum(summary["shape"].values()) == pytest.approx(1.0, abs=1e-5)
    import keras

    fusion = model.get_layer("fusion")
    modalities = ["image", "text", "numeric", "categorical"]
    arguments = keras.Model(
        model.inputs,
        [
            [model.get_layer(f"{m}_encoder").output for m in modalities],
            model.get_layer("modality_presence").output,
        ],
    )
    features = preprocessor.transform(preprocessor.raw_inputs(table))
    encoded, presence = arguments(features)
    assert float(np.asarray(presence).min()) == 0.0  # the demo data has missing modalities: they count as 0
    weights = np.asarray(fusion.modality_weight_values(encoded, presence))
    np.testing.assert_allclose(list(summary["shape"].values()), weights.mean(axis=0), atol=1e-5)


def test_per_task_attention_and_late_fusion_report_each_task_its_own_weights(
    tiny_config_factory, untrained_factory, tmp_path
):
    """Per-task attention through `mtmm inspect` on a trained run's best.keras; late fusion in process."""
    from keras_mtmm.cli.commands import main
    from keras_mtmm.evaluation.inspection import fusion_summary

    config = tiny_config_factory(
        "fusion.strategy=attention", "fusion.per_task=true", "training.epochs=1", "training.steps_per_epoch=2"
    )
    result = train(config, output_dir=tmp_path / "per_task", export=False, verbose=0)
    output = tmp_path / "per_task.json"
    assert main(["inspect", "--model", str(result.run_dir / "best.keras"), "--output", str(output)]) == 0
    late = tiny_config_factory("fusion.strategy=late")
    model, preprocessor = untrained_factory(late, tmp_path / "late")
    rng = np.random.default_rng(0)  # untrained, every task's weights start equal: make them differ
    for task in ("shape", "premium", "price"):  # late fusion: one fusion layer per task
        for weight in model.get_layer(f"fusion_{task}").weights:
            weight.assign(rng.normal(size=weight.shape).astype("float32"))
    for weights in (
        json.loads(output.read_text())["modality_weights"],
        fusion_summary(model, preprocessor, load_splits(late)["validation"]),
    ):
        assert list(weights) == ["shape", "premium", "price"]
        for values in weights.values():
            assert sum(values.values()) == pytest.approx(1.0, abs=1e-4)
        assert weights["shape"] != weights["premium"]


def test_cross_attention_reports_the_mass_each_modality_gives_the_others(
    tiny_config_factory, untrained_factory, tmp_path
):
    from keras_mtmm.evaluation.inspection import fusion_summary

    config = tiny_config_factory("fusion.strategy=cross_attention", "fusion.units=8")
    model, preprocessor = untrained_factory(config, tmp_path)
    table = {k: v[:40] for k, v in load_splits(config)["validation"].items()}
    summary = fusion_summary(model, preprocessor, table)["cross_attention"]
    for query, row in summary.items():
        assert row[query] == 0.0
        # Rows sum to 1 except where the query modality is missing (those rows count 0).
        assert 0.8 < sum(row.values()) <= 1.0 + 1e-5
