"""A run resumes only on the data it started with (`data_fingerprint.json`)."""

from __future__ import annotations

import numpy as np
import pytest

from keras_mtmm.data import fingerprint
from keras_mtmm.errors import DataError
from keras_mtmm.run_folder import RunFolder
from keras_mtmm.training.run_guards import check_same_data


def _splits(values=(1.0, 2.0, 3.0), texts=("a", "b", "c")):
    train = {"x": np.asarray(values, np.float32), "t": np.asarray(texts, dtype=object)}
    return {"train": train, "validation": {"x": np.ones(2, np.float32)}, "test": {"x": np.ones(1, np.float32)}}


def test_the_same_data_resumes_and_other_data_is_refused_naming_what_changed(tmp_path):
    check_same_data(RunFolder(tmp_path), RunFolder(tmp_path), _splits(), resuming=False)
    stored = (tmp_path / RunFolder.FINGERPRINT).read_text()
    check_same_data(RunFolder(tmp_path), RunFolder(tmp_path), _splits(), resuming=True)  # same data: resumes
    for splits, change in [
        (_splits(values=(1.0, 2.0, 3.5)), "the train split's values differ"),
        (_splits(texts=("a", "b", "d")), "the train split's values differ"),
        (_splits(values=(1.0, 2.0, 3.0, 4.0), texts=("a", "b", "c", "d")), "the train split has 4 rows, not 3"),
    ]:
        with pytest.raises(DataError, match="holds an interrupted run on other data") as caught:
            check_same_data(RunFolder(tmp_path), RunFolder(tmp_path), splits, resuming=True)
        assert change in str(caught.value)
        assert (tmp_path / RunFolder.FINGERPRINT).read_text() == stored  # nothing overwritten


def test_a_fresh_start_records_the_new_data_and_an_old_run_folder_without_one_resumes(tmp_path):
    check_same_data(RunFolder(tmp_path), RunFolder(tmp_path), _splits(), resuming=False)
    check_same_data(
        RunFolder(tmp_path), RunFolder(tmp_path), _splits(values=(9.0, 9.0, 9.0)), resuming=False
    )  # no backup: fresh
    (tmp_path / RunFolder.FINGERPRINT).unlink()
    check_same_data(RunFolder(tmp_path), RunFolder(tmp_path), _splits(), resuming=True)
    assert RunFolder(tmp_path).read_json(RunFolder.FINGERPRINT) == fingerprint.fingerprint(_splits())


def test_shards_are_fingerprinted_by_size_and_their_first_and_last_blocks(tmp_path):
    class Shards:
        def __init__(self, files):
            self.files = files

        def __len__(self):
            return 5

    shard = tmp_path / "train-0.tfrecord"
    shard.write_bytes(b"x" * (3 * fingerprint.BLOCK))
    before = fingerprint.fingerprint({"train": Shards([str(shard)])})
    data = bytearray(shard.read_bytes())
    data[-1] = ord("y")  # the last block
    shard.write_bytes(bytes(data))
    assert fingerprint.fingerprint({"train": Shards([str(shard)])}) != before
