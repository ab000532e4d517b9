"""ESMM task dependencies: p(t) = p(parent) x p(t | parent), trained on the entire space; the head exported."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import ConfigError
from keras_mtmm.tasks.scores import roc_auc


def esmm_config(rows: int = 6000, seed: int = 0, **ctcvr) -> dict:
    return {
        "name": "esmm",
        "seed": seed,
        "data": {"source": "impressions", "num_examples": rows, "validation_fraction": 0.15, "test_fraction": 0.25},
        "modalities": {
            "ids": {"type": "categorical", "columns": ["user_id", "item_id"], "hash_buckets": 8192},
            "item": {"type": "categorical", "columns": ["category"]},
            "history": {"type": "categorical", "columns": ["history"], "multi_valued": True, "max_values": 5},
            "price": {"type": "numeric", "columns": ["price"]},
        },
        "tasks": {
            "ctr": {"type": "binary", "label": "clicked", "classes": ["no", "yes"], "group": "user_id"},
            "ctcvr": {"type": "binary", "label": "converted", "classes": ["no", "yes"], "depends_on": "ctr", **ctcvr},
        },
        "sharing": {"type": "hard", "shared_units": [32], "tower_units": [16]},
        "training": {"epochs": 6, "batch_size": 128, "learning_rate": 0.005},
    }


@pytest.fixture(scope="module")
def esmm_run(tmp_path_factory):
    from keras_mtmm.training.run import train

    root = tmp_path_factory.mktemp("esmm")
    config = config_from_dict(esmm_config())
    return config, train(config, output_dir=root / "run", export_dir=root / "models", verbose=0)


def test_the_conditional_head_trained_only_through_the_product_ranks_conversions_after_a_click(esmm_run, capsys):
    config, result = esmm_run
    test = load_splits(config)["test"]
    raw = result.preprocessor.raw_inputs(test)
    served = tf.saved_model.load(str(result.export_path)).signatures["serving_default"](
        **{name: tf.constant(values) for name, values in raw.items()}
    )
    assert sorted(served) == ["ctcvr", "ctcvr_conditional", "ctr"]
    ctr, ctcvr, cvr = (served[name].numpy()[:, 0] for name in ("ctr", "ctcvr", "ctcvr_conditional"))
    assert (ctcvr <= ctr).all()  # every row: p(click and convert) <= p(click)
    np.testing.assert_allclose(ctcvr, ctr * cvr, rtol=1e-6)
    clicked = test["clicked"] == "yes"
    converted = test["converted"][clicked] == "yes"
    assert roc_auc(converted.astype(float), cvr[clicked]) >= 0.7  # the price's rule, learnt through the product
    assert np.corrcoef(cvr, test["p_convert"])[0, 1] >= 0.8  # (the true p(convert | click))
    # Both tasks rank well above chance; the true probabilities rank at about 0.79, the users' own
    # propensities (about 7 training impressions each) being what this small run cannot learn.
    assert roc_auc((test["clicked"] == "yes").astype(float), ctr) >= 0.68
    assert roc_auc((test["converted"] == "yes").astype(float), ctcvr) >= 0.68
    ranking = result.metrics["tasks"]["ctr"]
    assert ranking["gauc"] is not None and 0.5 < ranking["gauc"] <= 1 and 0 < ranking["ndcg@10"] <= 1
    assert "gauc" not in result.metrics["tasks"]["ctcvr"]  # (no group column there)
    from keras_mtmm.cli.commands import main

    assert main(["inspect", "--model", str(result.export_path)]) == 0
    assert "p(ctcvr | ctr): the head of ctcvr" in capsys.readouterr().out
    task_signature = tf.saved_model.load(str(result.export_path)).signatures["predict_ctcvr"]
    assert sorted(task_signature.structured_outputs) == ["ctcvr", "ctcvr_conditional", "ctcvr_label"]


@pytest.mark.parametrize(
    "change, where, what",
    [
        ({"depends_on": "ctcvr"}, "tasks.ctcvr.depends_on", "not another configured task"),
        ({"depends_on": "ctrr"}, "tasks.ctcvr.depends_on", "did you mean 'ctr'"),
        ({"combine": "sum"}, "tasks.ctcvr.combine", "unknown value 'sum'"),
        ({"type": "regression", "classes": None}, "tasks.ctcvr.depends_on", "multiplies two probabilities"),
    ],
)
def test_a_dependency_the_model_cannot_compute_is_a_config_error(change, where, what):
    with pytest.raises(ConfigError) as raised:
        config_from_dict(esmm_config(**change))
    assert raised.value.where == where and what in str(raised.value)


def test_dependencies_in_a_circle_are_refused():
    raw = esmm_config()
    raw["tasks"]["ctr"]["depends_on"] = "ctcvr"
    with pytest.raises(ConfigError, match="go round in a circle"):
        config_from_dict(raw)


def test_the_recsys_example_config_loads_with_its_dependency_and_hashed_ids():
    from keras_mtmm.config.loading import load_config
    from tests.conftest import REPO_ROOT

    config = load_config(REPO_ROOT / "configs" / "recsys_esmm.yaml")
    assert config.tasks["ctcvr"].depends_on == "ctr" and config.modalities["ids"].get().hash_buckets == 65536
    assert config.modalities["history"].get().multi_valued and config.sharing.type == "mmoe"


@pytest.mark.slow
def test_the_recsys_example_ranks_conversions_after_a_click_nearly_as_the_truth_does(tmp_path):
    """As the README reports it: the CVR head, trained only through pCTCVR, within 0.03 AUC of p(convert | click)."""
    from keras_mtmm.config.loading import load_config
    from keras_mtmm.training.run import train
    from tests.conftest import REPO_ROOT

    config = load_config(REPO_ROOT / "configs" / "recsys_esmm.yaml")
    result = train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "models", verbose=0)
    test = load_splits(config)["test"]
    raw = result.preprocessor.raw_inputs(test)
    served = tf.saved_model.load(str(result.export_path)).signatures["serving_default"](
        **{name: tf.constant(values) for name, values in raw.items()}
    )
    clicked = test["clicked"] == "yes"
    converted = (test["converted"][clicked] == "yes").astype(float)
    cvr = served["ctcvr_conditional"].numpy()[clicked, 0]
    assert roc_auc(converted, cvr) >= roc_auc(converted, test["p_convert"][clicked]) - 0.03
    assert result.metrics["tasks"]["satisfaction"]["mae"] <= 0.35
