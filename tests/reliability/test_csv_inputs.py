"""CSV files that are not what the config expects: one error naming the file (and line), never a traceback."""

from __future__ import annotations

import pytest

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.csv_reader import MAX_CELL_BYTES
from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import DataError


def _config(path):
    return config_from_dict(
        {
            "name": "csv",
            "data": {"source": "csv", "path": str(path), "validation_fraction": 0.2, "test_fraction": 0.2},
            "modalities": {
                "numbers": {"type": "numeric", "columns": ["a"], "encoder": {"type": "identity"}},
                "words": {"type": "text", "columns": ["t"]},
            },
            "tasks": {"y": {"type": "regression", "label": "y"}},
        }
    )


def _rows(count: int = 10) -> list[str]:
    return [f"{i},word{i},{i}" for i in range(count)]


def test_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(("a,t,y\n" + "\n".join(_rows()) + "\n1,caf\xe9,1\n").encode("latin-1"))
    with pytest.raises(DataError, match=r"x.csv:\d+: is not UTF-8 text"):
        load_splits(_config(path))


def test_a_cell_over_the_limit(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,t,y\n" + "\n".join(_rows()) + f"\n1,{'w' * (MAX_CELL_BYTES + 1)},1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"x.csv:12: a cell is larger than 1,048,576 bytes"):
        load_splits(_config(path))


def test_a_big_cell_under_the_limit_is_read(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,t,y\n" + "\n".join(_rows()) + f"\n1,{'w' * 200_000},1\n", encoding="utf-8")
    splits = load_splits(_config(path))
    assert sum(len(splits[name]["t"]) for name in ("train", "validation", "test")) == 11


def test_a_duplicate_column_is_refused(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,t,y,a\n" + "\n".join(f"{row},9" for row in _rows()) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"x.csv: column 'a': appears 2 times in the header"):
        load_splits(_config(path))
