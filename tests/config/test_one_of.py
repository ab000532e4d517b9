"""One-of config blocks: each registered class's own keys, nested under its name or flat as before."""

from __future__ import annotations

import copy
import dataclasses

import keras
import pytest
import yaml

from keras_mtmm.config.bounds import Bound
from keras_mtmm.config.loading import config_from_dict, load_config
from keras_mtmm.config.schema import SharingConfig, WeightingConfig
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.sharing import build_sharing
from keras_mtmm.registry import ENCODERS, FUSIONS, MODALITY_TYPES, SHARINGS, WEIGHTINGS
from tests.conftest import DEMO_CONFIG


def demo_raw() -> dict:
    return yaml.safe_load(load_config(DEMO_CONFIG).to_yaml())


def test_nested_and_flat_keys_give_the_same_config():
    nested = load_config(DEMO_CONFIG, ["sharing.type=mmoe", "sharing.mmoe.num_experts=8"])
    flat = load_config(DEMO_CONFIG, ["sharing.type=mmoe", "sharing.num_experts=8"])
    assert nested == flat
    assert nested.sharing.get() == SHARINGS.get("mmoe").config_class(num_experts=8)
    assert nested.sharing.num_experts == 8  # the selected class's keys read on the block, as before


@pytest.mark.parametrize(
    "block, registry",
    [("sharing", SHARINGS), ("fusion", FUSIONS), ("weighting", WEIGHTINGS)],
)
def test_every_registered_choice_round_trips_through_the_resolved_config(block, registry):
    selector = "type" if block == "sharing" else "strategy"
    for name in registry.names():
        raw = demo_raw()
        raw[block] = {selector: name}
        if name == "mtan" or name == "mgda":
            continue  # (need more of the config: tested with their own examples)
        if name == "cross_attention":
            raw["modalities"]["text"]["encoder"] = {"type": "conv1d"}
        config = config_from_dict(raw, check_files=False)
        again = config_from_dict(yaml.safe_load(config.to_yaml()), check_files=False)
        assert again == config, name
        keys = getattr(registry.get(name), "config_class", None)
        if keys is not None:  # the resolved config says every key the choice used
            assert set(yaml.safe_load(config.to_yaml())[block][name]) == {f.name for f in dataclasses.fields(keys)}


def test_an_older_flat_resolved_config_loads_as_the_nested_one():
    """Run folders written before sub-configs hold every key of every choice, flat."""
    old = yaml.safe_load(DEMO_CONFIG.read_text())
    old["sharing"] = {
        "type": "ple",
        "shared_units": [128, 64],
        "tower_units": [32],
        "dropout": 0.1,
        "num_experts": 4,
        "expert_units": [16],
        "num_shared_experts": 1,
        "num_task_experts": 2,
        "num_levels": 2,
        "activation": "gelu",
        "dselect_k": 2,
        "dselect_gamma": 1.0,
        "dselect_entropy_weight": 0.1,
        "dselect_per_example": False,
    }
    old["weighting"] = {
        "strategy": "cagrad",
        "temperature": 2.0,
        "alpha": 1.5,
        "cagrad_c": 0.3,
        "famo_update": "same_batch",
    }
    old["fusion"] = {"strategy": "low_rank", "units": 16, "weights": None, "rank": 2, "depth": 1, "per_task": False}
    old["modalities"]["image"].update(image_size=[24, 24], max_tokens=2000, sequence_length=16)
    config = config_from_dict(old)
    assert config.sharing.get() == SHARINGS.get("ple").config_class(1, 2, 2, [16])
    assert config.weighting.get().cagrad_c == 0.3 and config.fusion.get().rank == 2
    assert config.modalities["image"].get().image_size == [24, 24]
    resolved = yaml.safe_load(config.to_yaml())
    assert set(resolved["sharing"]) == {"type", "tower_units", "dropout", "activation", "ple"}  # others: defaults
    assert config_from_dict(resolved) == config


def test_a_value_for_a_strategy_not_selected_is_checked_and_kept():
    """weighting keys stay where a later `--set weighting.strategy=...` finds them."""
    with pytest.raises(ConfigError, match=r"weighting\.cagrad_c: expected >= 0, got -1"):
        load_config(DEMO_CONFIG, ["weighting.cagrad_c=-1"])
    with pytest.raises(ConfigError, match=r"weighting\.cagrad\.cagrad_c: expected >= 0"):
        load_config(DEMO_CONFIG, ["weighting.cagrad.cagrad_c=-1"])
    config = load_config(DEMO_CONFIG, ["weighting.cagrad_c=0.25"])
    assert config.weighting.strategy == "static"
    resolved = yaml.safe_load(config.to_yaml())
    assert resolved["weighting"]["cagrad"] == {"cagrad_c": 0.25}
    switched = config_from_dict(resolved, ["weighting.strategy=cagrad"])
    assert switched.weighting.get().cagrad_c == 0.25


@pytest.mark.parametrize(
    "overrides, where, what",
    [
        (
            ["sharing.type=mmoe", "sharing.dselect_gamma=2.0"],
            "sharing.dselect_gamma",
            "applies to sharing.type dselect_k only",
        ),
        (["sharing.dselect_k.dselect_gamma=2.0"], "sharing.dselect_k.dselect_gamma", "not 'hard'"),
        (["modalities.text.encoder.pooling=average"], "modalities.text.encoder.pooling", "applies to encoder type cnn"),
        (
            ["sharing.type=mmoe", "sharing.num_experts=2", "sharing.mmoe.num_experts=3"],
            "sharing.num_experts",
            "given twice",
        ),
        (["sharing.num_expert=2"], "sharing.num_expert", "did you mean 'num_experts'"),
        (["sharing.mmoe=3"], "sharing.mmoe", "expected a mapping"),
        (["sharing.type=mmoe", "sharing.mmoe.expert_units=[4, 0]"], "sharing.mmoe.expert_units[1]", "positive integer"),
        (
            ["sharing.type=ple", "sharing.num_levels=2", "sharing.num_shared_experts=0"],
            "sharing.num_shared_experts",
            "stacked",
        ),
        (["modalities.image.image_size=[4, 4]"], "modalities.image.image_size", "[height, width] >= 8"),
        (["modalities.image.image.image_size=[9, 9]"], "modalities.image.image_size", "given twice"),
        (["modalities.image.encoder.type=bag"], "modalities.image.encoder.type", "does not take image input"),
        (["fusion.strategy=sum"], "fusion.strategy", "unknown fusion.strategy 'sum'"),
        (["modalities.categorical.hash_buckets=1000000000"], "modalities.categorical.hash_buckets", "16777216"),
        (
            ["modalities.sound.type=audio", "modalities.sound.columns=[clip]", "modalities.sound.duration_s=3600"],
            "modalities.sound.duration_s",
            "at most 60 seconds",
        ),
    ],
)
def test_errors_name_the_key_as_the_config_gave_it(overrides, where, what):
    with pytest.raises(ConfigError) as raised:
        load_config(DEMO_CONFIG, overrides)
    assert raised.value.where == where and what in str(raised.value), str(raised.value)


def test_the_encoder_type_defaults_to_the_modality_types_own():
    raw = demo_raw()
    for modality in raw["modalities"].values():
        modality["encoder"] = {"units": 8}
    config = config_from_dict(raw)
    for name, modality in config.modalities.items():
        assert modality.encoder.type == MODALITY_TYPES.get(modality.type).default_encoder
        assert modality.type in ENCODERS.get(modality.encoder.type).modality_types, name


@dataclasses.dataclass
class ToyConfig:
    width: int = 3


@keras.saving.register_keras_serializable(package="tests")
class ToySharing(keras.layers.Layer):
    """A sharing type added in one place: its keys, their check and its factory."""

    config_class = ToyConfig
    checks = (Bound("width", ">= 1", lambda width: width >= 1, "3"),)

    @classmethod
    def from_settings(cls, sharing, task_names, name):
        return cls(task_names, sharing.get().width, name=name)

    def __init__(self, task_names, width, **kwargs):
        super().__init__(**kwargs)
        self.task_names, self.width = list(task_names), width
        self.dense = keras.layers.Dense(width)

    def call(self, inputs):
        return {task: self.dense(inputs) for task in self.task_names}


def test_a_sharing_type_registered_with_its_keys_needs_nothing_else(monkeypatch):
    monkeypatch.setitem(SHARINGS._entries, "toy", ToySharing)
    config = load_config(DEMO_CONFIG, ["sharing.type=toy", "sharing.toy.width=5"])
    assert config.sharing.get() == ToyConfig(5)
    assert load_config(DEMO_CONFIG, ["sharing.type=toy", "sharing.width=5"]) == config
    with pytest.raises(ConfigError, match=r"sharing\.width: expected >= 1, got 0"):
        load_config(DEMO_CONFIG, ["sharing.type=toy", "sharing.width=0"])
    layer = build_sharing(config.sharing, ["a", "b"], name="sharing")
    assert isinstance(layer, ToySharing) and layer.width == 5
    assert yaml.safe_load(config.to_yaml())["sharing"]["toy"] == {"width": 5}


def test_the_block_refuses_keys_the_selected_class_does_not_have():
    sharing = SharingConfig.of(type="mmoe", num_experts=3)
    sharing.num_experts = 6
    assert sharing.get().num_experts == 6
    with pytest.raises(AttributeError, match="'mmoe' has no key 'shared_units'"):
        sharing.shared_units = [4]  # would otherwise be set and read by nothing
    with pytest.raises(AttributeError, match="no key 'shared_units'"):
        _ = sharing.shared_units
    assert copy.deepcopy(sharing) == sharing
    assert WeightingConfig.of(strategy="dwa", dwa={"temperature": 3.0}).temperature == 3.0


def test_an_unknown_modality_type_is_named_before_its_default_encoder_is_looked_for():
    raw = demo_raw()
    raw["modalities"]["text"] = {"type": "txt", "columns": ["description"]}
    with pytest.raises(ConfigError, match=r"modalities\.text\.type: unknown modality type 'txt'.*did you mean 'text'"):
        config_from_dict(raw)
