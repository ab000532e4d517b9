"""Non-finite numbers in numeric feature columns: a data error naming the cell, never a NaN model."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import DataError, ExportError


def _config(csv_path=None, on_bad_record: str = "error"):
    data = {"source": "memory"} if csv_path is None else {"source": "csv", "path": str(csv_path)}
    return config_from_dict(
        {
            "name": "cells",
            "data": {**data, "validation_fraction": 0.2, "test_fraction": 0.2, "on_bad_record": on_bad_record},
            "modalities": {"numbers": {"type": "numeric", "columns": ["a", "b"], "encoder": {"type": "identity"}}},
            "tasks": {"y": {"type": "regression", "label": "y"}},
        }
    )


def _write(tmp_path, cells: dict[int, str]):
    """A 10-row CSV with columns a, b, y; `cells` replaces column b's cell on the given data rows."""
    lines = ["a,b,y"] + [f"{i},{cells.get(i, str(2 * i))},{i}" for i in range(10)]
    path = tmp_path / "cells.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity", "1e39", "-3.5e38"])
def test_a_non_finite_cell_is_an_error_naming_file_line_and_column(tmp_path, cell):
    path = _write(tmp_path, {4: cell})
    with pytest.raises(DataError) as caught:
        load_splits(_config(path))
    message = str(caught.value)
    assert message.startswith(f"{path}:6: column 'b'")  # data row 4 is line 6 (the header is line 1)
    assert repr(cell) in message and "on_bad_record: skip" in message


def test_with_skip_the_row_is_left_out_and_counted(tmp_path):
    path = _write(tmp_path, {2: "inf", 7: "1e40"})
    splits = load_splits(_config(path, on_bad_record="skip"))
    assert len(splits.skipped) == 2 and ":4: column 'b'" in splits.skipped[0] and ":9:" in splits.skipped[1]
    rows = sum(len(splits[name]["b"]) for name in ("train", "validation", "test"))
    assert rows == 8
    assert all(np.isfinite(splits[name]["b"]).all() for name in ("train", "validation", "test"))


def test_nan_and_empty_cells_stay_missing_values(tmp_path):
    path = _write(tmp_path, {1: "", 3: "nan", 5: "NaN"})
    splits = load_splits(_config(path))
    values = np.concatenate([splits[name]["b"] for name in ("train", "validation", "test")])
    assert np.isnan(values).sum() == 3 and not np.isinf(values).any()


def test_memory_tables_are_checked_too():
    table = {"a": np.arange(10.0), "b": np.array([1.0] * 9 + [np.inf]), "y": np.arange(10.0)}
    with pytest.raises(DataError, match=r"the memory data, row 9: column 'b'"):
        load_splits(_config(), data=table)


def test_the_preprocessor_refuses_inf_in_training_data_and_serving_reads_it_as_missing(tmp_path):
    from keras_mtmm.preprocessing.preprocessor import Preprocessor

    config = _config()
    preprocessor = Preprocessor.from_settings(config)
    good = {"a": np.arange(6.0, dtype=np.float32), "b": np.ones(6, np.float32), "y": np.arange(6.0)}
    bad = {**good, "b": np.array([1, 1, np.inf, 1, 1, 1], np.float32)}
    with pytest.raises(DataError, match=r"column 'b'.*row 2"):
        preprocessor.adapt(bad, tmp_path / "bad")
    preprocessor.adapt(good, tmp_path / "good")
    raw = {"numbers": tf.constant([[1.0, np.inf], [np.inf, -np.inf], [2.0, 1.0]], tf.float32)}
    features = preprocessor.transform(raw)
    values = features["numbers"].numpy()
    assert np.isfinite(values).all()
    assert values[0, 1] == 0.0 and (values[1] == 0.0).all()  # non-finite reads as missing: the mean, 0
    np.testing.assert_array_equal(features["modality_presence"].numpy()[:, 0], [1.0, 0.0, 1.0])


def test_an_export_refuses_a_model_with_non_finite_variables(tiny_run, tmp_path):
    import keras

    from keras_mtmm.export.saved_model import export_model

    network = keras.models.clone_model(tiny_run.model)
    network.set_weights(tiny_run.model.get_weights())
    kernel = network.weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, dtype=kernel.dtype))
    with pytest.raises(ExportError, match=r"1 of \d+ model variables hold NaN"):
        export_model(network, tiny_run.preprocessor, "", {}, tmp_path, "nan_model")
    assert not (tmp_path / "nan_model").exists()


def test_a_task_with_no_labelled_training_row_is_refused_before_training(tmp_path):
    from keras_mtmm.training.run import train

    table = {"a": np.arange(20.0), "b": np.ones(20), "y": np.full(20, np.nan)}
    with pytest.raises(DataError, match=r"tasks.y.label: column 'y' has no labelled row in the training split"):
        train(_config(), output_dir=tmp_path / "run", export=False, verbose=0, data=table)
