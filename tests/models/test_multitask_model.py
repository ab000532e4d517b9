"""MultiTaskModel's public surface: its fusion and sharing layers as properties, and its own loss tracker."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_mtmm.models.multitask import compile_model
from keras_mtmm.models.network import NetworkParts, build_model
from keras_mtmm.registry import FUSIONS, SHARINGS
from tests.conftest import TWO_BY_TWO


def test_fusion_and_sharing_are_properties_found_by_their_registered_classes(weighting_batch, tiny_config_factory):
    _, preprocessor, *_ = weighting_batch
    config = tiny_config_factory("fusion.strategy=gated", "sharing.type=mmoe")
    model = compile_model(build_model(config, preprocessor), config, preprocessor, {t: 1.0 for t in config.tasks})
    assert isinstance(model.fusion, FUSIONS.get("gated")) and isinstance(model.sharing, SHARINGS.get("mmoe"))
    assert model.fusion is model.network.get_layer("fusion") and model.sharing is model.network.get_layer("sharing")
    late = tiny_config_factory("fusion.strategy=late")
    parts = NetworkParts(build_model(late, preprocessor))
    assert parts.fusion is None and parts.sharing is None  # one per task / per modality
    assert [parts.task_fusion(task).name for task in late.tasks] == [f"fusion_{task}" for task in late.tasks]
    assert len(parts.sharings) == len(late.modalities)


@pytest.mark.parametrize("strategy", ["static", "mgda"])
def test_the_logged_loss_is_the_weighted_sum_on_the_loss_only_and_the_gradient_path(
    weighting_batch, tiny_config_factory, strategy
):
    """`loss` is the model's own tracker (the gradient path's train_step updates it, not Keras')."""
    _, preprocessor, inputs, targets, masks = weighting_batch
    config = tiny_config_factory(*TWO_BY_TWO, f"weighting.strategy={strategy}")
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(config, preprocessor), config, preprocessor, {"premium": 2.0, "price": 0.5})
    assert [metric.name for metric in model.metrics].count("loss") == 1
    logs = model.train_on_batch(inputs, targets, sample_weight=masks, return_dict=True)
    weights = model.weighting.mean_recorded_weights()  # the step's effective weights
    expected = sum(weights[task] * logs[f"{task}_loss"] for task in config.tasks)
    assert logs["loss"] > 0 and logs["loss"] == pytest.approx(expected, rel=1e-5)
    if strategy == "static":
        assert weights == pytest.approx({"premium": 2.0, "price": 0.5})
    assert np.isfinite(list(logs.values())).all()
