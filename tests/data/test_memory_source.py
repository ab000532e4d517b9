"""`data.source: memory`: the Python API passes a table (dict of columns or a pandas DataFrame)."""

from __future__ import annotations

import numpy as np
import pytest

from keras_mtmm.data.demo import generate_demo
from keras_mtmm.errors import DataError


def test_a_table_passed_in_trains_like_the_same_rows_from_the_source(tiny_config_factory, tmp_path):
    from keras_mtmm.training.run import train

    config = tiny_config_factory("training.epochs=1")
    from_source = train(config, output_dir=tmp_path / "demo", export=False, verbose=0)
    table = generate_demo(config.data.num_examples, seed=config.seed, image_size=16)
    memory = tiny_config_factory("training.epochs=1", "data.source=memory")
    from_memory = train(memory, output_dir=tmp_path / "memory", export=False, verbose=0, data=table)
    assert from_memory.metrics["tasks"] == from_source.metrics["tasks"]


def test_a_dataframe_is_read_column_by_column(tiny_config_factory):
    pandas = pytest.importorskip("pandas")
    from keras_mtmm.data.tables import load_splits

    config = tiny_config_factory("data.source=memory")
    table = generate_demo(config.data.num_examples, seed=1, image_size=16)
    splits = load_splits(config, data=pandas.DataFrame(table))
    assert sum(len(split["image"]) for split in splits.values()) == config.data.num_examples
    assert splits["train"]["weight_kg"].dtype == np.float32


def test_memory_errors_name_the_problem(tiny_config_factory):
    from keras_mtmm.data.tables import load_splits

    memory = tiny_config_factory("data.source=memory")
    with pytest.raises(DataError, match="passed in from Python"):
        load_splits(memory)
    table = generate_demo(50, seed=1, image_size=16)
    with pytest.raises(DataError, match="is not in the memory data"):
        load_splits(memory, data={k: v for k, v in table.items() if k != "material"})
    with pytest.raises(DataError, match="rows"):
        load_splits(memory, data={**table, "material": table["material"][:10]})
    with pytest.raises(DataError, match="set data.source: memory"):
        load_splits(tiny_config_factory(), data=table)
