"""A label outside the classes the model learns: one error at the row's file and line, before training."""

from __future__ import annotations

import numpy as np
import pytest

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.tables import iter_tables, load_splits
from keras_mtmm.errors import DataError
from keras_mtmm.evaluation.scoring import encode_targets
from keras_mtmm.training.run import train

ROWS = 40  # rows 'a'/'b', then one 'zzz' row: CSV line ROWS + 2 (the header is line 1), memory row ROWS


def _config(data: dict, task_type: str = "multiclass", seed: int = 0):
    return config_from_dict(
        {
            "name": "labels",
            "seed": seed,
            "data": {"validation_fraction": 0.2, "test_fraction": 0.3, **data},
            "modalities": {"numbers": {"type": "numeric", "columns": ["x"]}},
            "tasks": {"y": {"type": task_type, "label": "y"}},
            "training": {"epochs": 1, "batch_size": 8},
        }
    )


def _columns():
    x = np.arange(ROWS + 1, dtype=np.float32) / ROWS
    y = np.array(["a", "b"] * (ROWS // 2) + ["zzz"], dtype=object)
    return {"x": x, "y": y}


def _write_csv(path):
    columns = _columns()
    lines = ["x,y"] + [f"{x:.4f},{y}" for x, y in zip(columns["x"], columns["y"])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _seed_with_last_row_in(split: str, data: dict, table=None) -> int:
    for seed in range(50):
        splits = load_splits(_config(data, seed=seed), data=table)
        if "zzz" in list(splits[split]["y"]) and "zzz" not in list(splits["train"]["y"]):
            return seed
    raise AssertionError(f"no seed puts the last row in the {split} split")


@pytest.mark.parametrize("split", ["test", "validation"])
def test_a_class_seen_only_outside_the_train_split_is_named_at_its_csv_line(tmp_path, split):
    data = {"source": "csv", "path": str(_write_csv(tmp_path / "d.csv"))}
    seed = _seed_with_last_row_in(split, data)
    run = tmp_path / "run"
    pattern = (
        rf"d\.csv:{ROWS + 2}: column 'y': label 'zzz' is not one of the classes the model learns \['a', 'b'\] "
        rf"\(this row is in the {split} split\); list every class in tasks\.y\.classes"
    )
    with pytest.raises(DataError, match=pattern):
        train(_config(data, seed=seed), output_dir=str(run))
    assert not list(run.rglob("*.keras")), "the labels must be checked before anything is trained"


def test_a_memory_table_names_the_row_index(tmp_path):
    data = {"source": "memory"}
    seed = _seed_with_last_row_in("test", data, _columns())
    with pytest.raises(DataError, match=rf"^the memory data, row {ROWS}: column 'y': label 'zzz'"):
        train(_config(data, seed=seed), output_dir=str(tmp_path / "run"), data=_columns())


def test_listing_the_class_lets_it_train(tmp_path):
    data = {"source": "memory"}
    seed = _seed_with_last_row_in("test", data, _columns())
    config = _config(data, seed=seed)
    config.tasks["y"].classes = ["a", "b", "zzz"]
    train(config, output_dir=str(tmp_path / "run"), data=_columns())
    assert list((tmp_path / "run").rglob("best.keras"))


def test_scoring_batches_of_a_file_names_the_line_of_the_bad_row(tmp_path):
    # evaluate.py scores a split in batches of rows: the row's line must survive the batching.
    data = {"source": "csv", "path": str(_write_csv(tmp_path / "d.csv"))}
    splits = load_splits(_config(data))
    split = next(part for part in splits.values() if "zzz" in list(part["y"]))
    assert list(split["y"]).index("zzz") >= 4, "the bad row must be past the first batch"
    metadata = {"tasks": {"y": {"type": "multiclass", "label": "y", "classes": ["a", "b"]}}}
    with pytest.raises(DataError, match=rf"d\.csv:{ROWS + 2}: column 'y': label 'zzz'"):
        for batch in iter_tables(split, 4):
            encode_targets(batch, metadata)


def test_a_multilabel_row_is_named_at_its_line(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("x,y\n" + "".join(f"{i},a|b\n" for i in range(10)) + "3,a|nope\n", encoding="utf-8")
    data = {"source": "csv", "path": str(path)}
    metadata = {"tasks": {"y": {"type": "multilabel", "label": "y", "classes": ["a", "b"]}}}
    splits = load_splits(_config(data, "multilabel"))
    split = next(splits[name] for name in ("train", "validation", "test") if "a|nope" in list(splits[name]["y"]))
    with pytest.raises(DataError, match=r"m\.csv:12: column 'y': label 'nope' is not one of the classes"):
        encode_targets(split, metadata)
