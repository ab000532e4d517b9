"""Config loading, overrides and validation: every error names the dotted key and a fix."""

from __future__ import annotations

import pytest
import yaml

from keras_mtmm.config.loading import config_from_dict, load_config
from keras_mtmm.config.schema import ExperimentConfig
from keras_mtmm.errors import ConfigError
from tests.conftest import DEMO_CONFIG


def demo_dict() -> dict:
    return yaml.safe_load(DEMO_CONFIG.read_text())


def test_demo_config_loads_with_types():
    config = load_config(DEMO_CONFIG)
    assert isinstance(config, ExperimentConfig)
    assert list(config.modalities) == ["image", "text", "numeric", "categorical"]
    assert config.modalities["numeric"].columns == ["weight_kg", "age_days", "rating"]
    assert config.tasks["premium"].type == "binary"
    assert isinstance(config.training.learning_rate, float)


def test_resolved_config_round_trips_through_yaml():
    config = load_config(DEMO_CONFIG, ["training.epochs=3"])
    again = config_from_dict(yaml.safe_load(config.to_yaml()))
    assert again == config
    assert again.training.epochs == 3


def test_set_overrides_parse_yaml_scalars_and_nested_keys():
    config = load_config(
        DEMO_CONFIG,
        ["training.epochs=1", "tasks.price.weight=0.5", "fusion.weights=[1, 2, 3, 4]", "fusion.strategy=weighted"],
    )
    assert config.training.epochs == 1
    assert config.tasks["price"].weight == 0.5
    assert config.fusion.weights == [1.0, 2.0, 3.0, 4.0]
    assert config.fusion.strategy == "weighted"


def test_int_is_accepted_where_a_float_is_expected():
    config = load_config(DEMO_CONFIG, ["training.learning_rate=1"])
    assert config.training.learning_rate == 1.0 and isinstance(config.training.learning_rate, float)


def test_default_encoder_is_filled_in_per_modality_type():
    raw = demo_dict()
    del raw["modalities"]["text"]["encoder"]
    assert config_from_dict(raw).modalities["text"].encoder.type == "conv1d"


@pytest.mark.parametrize(
    ("mutate", "where", "fragment"),
    [
        (lambda c: c.update(trainig={}), "trainig", "did you mean 'training'"),
        (lambda c: c["training"].update(epochz=3), "training.epochz", "did you mean 'epochs'"),
        (lambda c: c["tasks"]["price"].update(wieght=1), "tasks.price.wieght", "did you mean 'weight'"),
        (lambda c: c["training"].update(epochs="ten"), "training.epochs", "expected an integer, got str 'ten'"),
        (lambda c: c["training"].update(epochs=True), "training.epochs", "expected an integer"),
        (
            lambda c: c["modalities"]["numeric"].update(columns="weight_kg"),
            "modalities.numeric.columns",
            "expected a list",
        ),
        (lambda c: c["fusion"].update(strategy="lat"), "fusion.strategy", "did you mean 'late'"),
        (lambda c: c["sharing"].update(type="mmeo"), "sharing.type", "did you mean 'mmoe'"),
        (lambda c: c["weighting"].update(strategy="statc"), "weighting.strategy", "did you mean 'static'"),
        (lambda c: c["tasks"]["shape"].update(type="multiclas"), "tasks.shape.type", "did you mean 'multiclass'"),
        (lambda c: c["modalities"]["image"].update(type="picture"), "modalities.image.type", "choose one of"),
        (lambda c: c["modalities"]["image"]["encoder"].update(type="mlp"), "modalities.image.encoder.type", "cnn"),
        (
            lambda c: c["tasks"]["shape"].update(metrics=["acuracy"]),
            "tasks.shape.metrics[0]",
            "did you mean 'accuracy'",
        ),
        (lambda c: c["fusion"].update(strategy="weighted", weights=[1, 2]), "fusion.weights", "expected 4 weights"),
        (lambda c: c["fusion"].update(weights=[1, 1, 1, 1]), "fusion.weights", "applies to fusion.strategy late and"),
        (lambda c: c["fusion"].update(strategy="low_rank", rank=0), "fusion.rank", "expected a positive integer"),
        (lambda c: c["data"].update(source="csv"), "data.path", "set data.path"),
        (lambda c: c["data"].update(test_fraction=0.7), "data.test_fraction", "expected a fraction"),
        (lambda c: c["tasks"]["premium"].update(classes=["a", "b", "c"]), "tasks.premium.classes", "2 classes"),
        (lambda c: c.update(tasks={}), "tasks", "no task"),
        (lambda c: c["sharing"].update(dropout=1.5), "sharing.dropout", "expected a rate"),
        (
            lambda c: c["modalities"]["image"].update(
                image_size=[8, 8], encoder={"type": "cnn", "filters": [4, 4, 4, 4]}
            ),
            "modalities.image.encoder.filters",
            "too small",
        ),
    ],
)
def test_config_errors_name_the_dotted_key(mutate, where, fragment):
    raw = demo_dict()
    mutate(raw)
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert caught.value.where == where
    assert fragment in str(caught.value)


def test_override_errors():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(DEMO_CONFIG, ["training.epochs"])
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO_CONFIG, ["training.epochs.value=3"])
    assert caught.value.where == "training.epochs"
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO_CONFIG, ["training.epoch=3"])
    assert caught.value.where == "training.epoch"


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: demo\ntraining:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.where.startswith(f"{path}:")


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "nope.yaml")


def test_exponent_floats_without_a_dot_are_numbers():
    """YAML 1.1 reads `1e-3` as a string; a float field takes it as the number it means."""
    from keras_mtmm.config.loading import load_config
    from tests.conftest import DEMO_CONFIG

    assert load_config(DEMO_CONFIG, ["training.learning_rate=1e-3"]).training.learning_rate == 0.001
    assert load_config(DEMO_CONFIG, ["training.learning_rate=2E4"]).training.learning_rate == 20000.0


@pytest.mark.parametrize("strategy", ["mgda", "cagrad", "upgrad"])
def test_the_exact_enumerating_solvers_refuse_more_tasks_than_they_can_enumerate(strategy):
    from keras_mtmm.weighting.mgda import MAX_ENUMERATED_TASKS

    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    tasks = {f"t{i}": {"type": "regression", "label": "price"} for i in range(MAX_ENUMERATED_TASKS + 1)}
    with pytest.raises(ConfigError, match=rf"at most {MAX_ENUMERATED_TASKS} tasks; 13 are configured"):
        config_from_dict({**demo, "tasks": tasks, "weighting": {"strategy": strategy}})
    fewer = dict(list(tasks.items())[:MAX_ENUMERATED_TASKS])
    config = config_from_dict({**demo, "tasks": fewer, "weighting": {"strategy": strategy}})
    assert config.weighting.strategy == strategy
