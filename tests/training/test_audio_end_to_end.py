"""Audio from a CSV of WAV paths: the pitch is learnt, the export takes WAV bytes, bad WAVs are named."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.tables import load_splits
from keras_mtmm.data.tones import PITCHES, write_tones
from keras_mtmm.errors import DataError


def tones_config(csv_path, seed: int = 0, **data) -> dict:
    return {
        "name": "tones",
        "seed": seed,
        "data": {"source": "csv", "path": str(csv_path), "validation_fraction": 0.2, "test_fraction": 0.2, **data},
        "modalities": {
            "clip": {
                "type": "audio",
                "columns": ["clip"],
                "audio": {"sample_rate": 8000, "duration_s": 0.5, "num_mel_bins": 32},
                "encoder": {"units": 32, "cnn": {"filters": [8, 16]}},
            }
        },
        "tasks": {"pitch": {"type": "multiclass", "label": "pitch"}},
        "sharing": {"type": "hard", "shared_units": [32], "tower_units": [16]},
        "training": {"epochs": 5, "batch_size": 32},
    }


@pytest.fixture(scope="module")
def tones_run(tmp_path_factory):
    from keras_mtmm.training.run import train

    root = tmp_path_factory.mktemp("tones")
    config = config_from_dict(tones_config(write_tones(root / "data", 300, seed=1)))
    return config, train(config, output_dir=root / "run", export_dir=root / "saved_models", verbose=0)


def test_the_pitch_of_a_tone_is_learnt_well_above_chance(tones_run):
    _, result = tones_run
    accuracy = result.metrics["tasks"]["pitch"]["accuracy"]
    assert accuracy >= 0.9 > 3 / len(PITCHES), accuracy  # chance: 1 / 4


def test_the_export_takes_wav_bytes_and_answers_as_the_model_in_memory(tones_run):
    config, result = tones_run
    raw = result.preprocessor.raw_inputs(load_splits(config)["test"])
    assert raw["clip"].dtype == object and raw["clip"][0][:4] == b"RIFF"  # the WAV file's bytes, as they are
    signatures = tf.saved_model.load(str(result.export_path)).signatures
    served = signatures["serving_default"](clip=tf.constant(raw["clip"][:16]))
    in_memory = result.model(result.preprocessor.transform({"clip": tf.constant(raw["clip"][:16])}))
    np.testing.assert_allclose(served["pitch"].numpy(), np.asarray(in_memory["pitch"]), atol=1e-5)
    classes = result.preprocessor.classes("pitch")
    labels = [classes[i] for i in served["pitch"].numpy().argmax(axis=1)]
    named = signatures["predict_pitch"](clip=tf.constant(raw["clip"][:16]))["pitch_label"]
    assert [value.decode() for value in named.numpy()] == labels


def test_a_corrupt_wav_is_named_by_file_and_line_or_skipped(tmp_path):
    path = write_tones(tmp_path, 40, seed=2)
    rows = list(csv.reader(path.open()))
    (tmp_path / rows[3][0]).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(DataError, match=r"tones\.csv:4: column 'clip'.* is not a WAV file"):
        load_splits(config_from_dict(tones_config(path)))
    skipped = load_splits(config_from_dict(tones_config(path, on_bad_record="skip")))
    assert sum(len(split["pitch"]) for split in skipped.values()) == 39


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_pitch_is_learnt_in_every_seed(tmp_path, seed):
    from keras_mtmm.training.run import train

    config = config_from_dict(tones_config(write_tones(tmp_path / "data", 300, seed=seed), seed=seed))
    result = train(config, output_dir=tmp_path / "run", verbose=0)
    assert result.metrics["tasks"]["pitch"]["accuracy"] >= 0.9


def test_the_audio_text_example_config_loads_and_its_generated_data_has_the_documented_rules():
    from keras_mtmm.config.loading import load_config
    from keras_mtmm.data.tones import HIGH_PITCHES, URGENT_WORDS
    from tests.conftest import REPO_ROOT

    config = load_config(REPO_ROOT / "configs" / "audio_text.yaml", ["data.num_examples=200"])
    table = load_splits(config)["train"]
    urgent = np.asarray([any(word in caption.split() for word in URGENT_WORDS) for caption in table["caption"]])
    captioned = table["caption"] != ""
    np.testing.assert_array_equal(urgent[captioned], (table["urgent"] == "yes")[captioned])
    alarm = (table["urgent"] == "yes") & np.isin(table["pitch"], HIGH_PITCHES)
    np.testing.assert_array_equal(alarm, table["alarm"] == "yes")


@pytest.mark.slow
def test_the_audio_text_example_learns_each_task_from_its_modality(tmp_path):
    """As the README reports it: each task well above its label prior."""
    from keras_mtmm.config.loading import load_config
    from keras_mtmm.training.run import train
    from tests.conftest import REPO_ROOT

    config = load_config(REPO_ROOT / "configs" / "audio_text.yaml")
    tasks = train(config, output_dir=tmp_path / "run", verbose=0).metrics["tasks"]
    assert tasks["pitch"]["accuracy"] >= 0.85 and tasks["urgent"]["auc"] >= 0.97 and tasks["alarm"]["auc"] >= 0.97
