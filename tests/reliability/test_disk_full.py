"""A full disk: one `error:` line naming the folder, exit 2, nothing half written, the last state kept.

Three ways in: the free-space check before the big writes (the file
system's free space, faked to be small); a file-size limit (`RLIMIT_FSIZE`
with SIGXFSZ ignored, so writes past it fail with EFBIG the way they fail
with ENOSPC on a full disk) on a real training process, where the check
passes and the writes themselves fail; and the messages TensorFlow's
writers use.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm import disk_space
from keras_mtmm.disk_space import DiskFull, disk_full_line
from keras_mtmm.export.saved_model import export_model, read_export_metadata
from keras_mtmm.training.checkpointing import AtomicModelCheckpoint, StepCheckpoint, read_training_state

from ..conftest import DEMO_CONFIG, REPO_ROOT, TINY_OVERRIDES


def _small_model() -> keras.Model:
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile("adam", "mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    return model


def test_a_training_state_that_does_not_fit_is_refused_and_the_last_one_kept(tmp_path, monkeypatch):
    backup = tmp_path / "backup"
    checkpoint = StepCheckpoint(backup, steps_per_epoch=10)
    checkpoint.set_model(_small_model())
    checkpoint.save(1, 0)
    assert read_training_state(backup)["global_step"] == 10

    monkeypatch.setattr(disk_space, "free_bytes", lambda folder: 1000)
    with pytest.raises(DiskFull) as raised:
        checkpoint.save(2, 0)
    line = str(raised.value)
    assert line.startswith(f"{backup}: the training state needs about ") and "1000" not in line
    assert "the disk has 0.0 MiB free; free disk space there and rerun the same command" in line
    assert f"the last complete state in {backup} is kept" in line
    assert read_training_state(backup)["global_step"] == 10, "the previous state still loads"
    assert sorted(p.name for p in backup.iterdir()) == ["latest.json", "state-10"]


def test_an_interrupted_best_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch):
    model = _small_model()
    best = tmp_path / "best.keras"
    callback = AtomicModelCheckpoint(str(best), monitor="loss", save_best_only=True)
    callback.set_model(model)
    callback.on_epoch_end(0, {"loss": 2.0})
    saved = best.read_bytes()

    def full_disk(self, *args, **kwargs):
        with open(self_path := kwargs.get("filepath") or args[0], "wb") as handle:
            handle.write(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, "No space left on device", str(self_path))

    monkeypatch.setattr(keras.Model, "save", full_disk)
    with pytest.raises(DiskFull, match=f"^{tmp_path}: no space left while writing best.keras"):
        callback.on_epoch_end(1, {"loss": 1.0})
    assert best.read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras"], "no staging file is left"


def test_an_export_that_does_not_fit_publishes_nothing(tiny_run, tmp_path, monkeypatch):
    config_yaml, metadata = read_export_metadata(tiny_run.export_path)
    monkeypatch.setattr(disk_space, "free_bytes", lambda folder: 0)
    with pytest.raises(DiskFull, match="the export needs about .* MiB; the disk has 0.0 MiB free; free disk space"):
        export_model(tiny_run.model, tiny_run.preprocessor, config_yaml, metadata, tmp_path / "models", "demo")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("saved_model.pb"))


@pytest.mark.parametrize(
    ("error", "where"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/runs/x/history.json"), "/runs/x/history.json"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk"),
        (tf.errors.ResourceExhaustedError(None, None, "/m/variables.data: No space left on device"), "disk"),
        (RuntimeError("Can't write data (file write failed: errno = 28, 'No space left on device')"), "disk"),
    ],
    ids=["oserror", "quota", "tensorflow", "h5py"],
)
def test_disk_full_errors_read_as_one_line(error, where):
    line = disk_full_line(error)
    assert line.startswith(f"{where}: no space left on the device (") and "\n" not in line
    assert line.endswith("resumes from its last complete state)")


def test_other_errors_are_not_taken_for_a_full_disk():
    assert disk_full_line(OSError(errno.EACCES, "Permission denied", "/x")) is None
    assert disk_full_line(ValueError("bad")) is None


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_a_training_process_whose_writes_fail_gives_one_line_and_no_crash(tmp_path):
    """The free-space check passes (the disk is not full); the checkpoint's own writes fail half-way."""
    sets = [a for s in [*TINY_OVERRIDES, "training.epochs=1"] for a in ("--set", s)]
    command = [sys.executable, str(REPO_ROOT / "train.py"), "--config", str(DEMO_CONFIG), *sets]
    command += ["--output-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "models"), "--no-report"]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TF_CPP", "KERAS_MTMM"))}
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
        preexec_fn=_limit_file_size(64 * 1024),
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no space left" in lines[0], done.stderr[-3000:]
    assert str(tmp_path / "run") in lines[0], lines[0]
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("saved_model.pb"))
    backup = tmp_path / "run" / "backup"
    assert not backup.exists() or not any(backup.glob(".state-*")), "no staging folder is left"
    if (backup / "latest.json").exists():
        assert read_training_state(backup) == json.loads((backup / "latest.json").read_text())
