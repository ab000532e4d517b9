"""Config files and --set values that are wrong in type, range or shape: one `error:` line, exit 2."""

from __future__ import annotations

import pytest

from keras_mtmm.cli.commands import main
from keras_mtmm.config.loading import load_config
from keras_mtmm.config.yaml_reader import MAX_YAML_NODES, load_yaml
from keras_mtmm.errors import ConfigError

from ..conftest import DEMO_CONFIG


@pytest.mark.parametrize(
    ("override", "where", "what"),
    [
        ("training.learning_rate=.nan", "training.learning_rate", "expected a finite number"),
        ("training.learning_rate=.inf", "training.learning_rate", "expected a finite number"),
        ("tasks.price.weight=.nan", "tasks.price.weight", "expected a finite number"),
        ("fusion.weights=[.nan,1,1,1]", "fusion.weights[0]", "expected a finite number"),
        ("training.epochs='3'", "training.epochs", "expected an integer"),
        ("training.epochs=3.5", "training.epochs", "expected an integer"),
        ("training.epochs=true", "training.epochs", "expected an integer"),
        ("training.early_stopping_patience=-1", "training.early_stopping_patience", ">= 0"),
        ("seed=-1", "seed", "from 0 to 4294967295"),
        ("seed=4294967296", "seed", "from 0 to 4294967295"),
        ("tasks.price.data={pathh: x}", "tasks.price.data.pathh", "unknown key"),
        ("name=has space", "name", "not a valid model name"),
        ("name=a\\\\b", "name", "not a valid model name"),
        ("name=" + "x" * 65, "name", "not a valid model name"),
        ("name=../up", "name", "not a valid model name"),
    ],
)
def test_a_bad_value_names_its_key(override, where, what):
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO_CONFIG, [override])
    assert caught.value.where == where and what in caught.value.what


@pytest.mark.parametrize("name", ["modality_presence", "has-dash", "9lives", "a b"])
def test_task_and_modality_names_follow_one_rule(tmp_path, name):
    text = DEMO_CONFIG.read_text(encoding="utf-8").replace("  price:                # area", f"  {name}:  # area")
    text = text.replace("\n  price:", f"\n  {name}:")
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.where == f"tasks.{name}"


def test_a_duplicate_key_is_refused_with_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\nseed: 1\nname: b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c.yaml:3: duplicate key 'name'"):
        load_config(path)


def test_an_alias_bomb_is_refused_at_once():
    levels = "".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    with pytest.raises(ConfigError, match=f"more than {MAX_YAML_NODES:,} values"):
        load_yaml('a: &a ["x","x","x","x","x","x","x","x","x"]\n' + levels, "bomb.yaml")


def test_deep_nesting_is_refused_without_recursion_error():
    with pytest.raises(ConfigError, match="nesting deeper than"):
        load_yaml("a: " + "[" * 10_000 + "]" * 10_000, "deep.yaml")


def test_a_few_aliases_still_work():
    assert load_yaml("base: &b {units: 8}\nx: *b\ny: *b\n", "ok.yaml") == {
        "base": {"units": 8},
        "x": {"units": 8},
        "y": {"units": 8},
    }


def test_a_config_that_is_not_utf8_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {path}: is not UTF-8 text (byte 9: invalid continuation byte); save the config as UTF-8"]
