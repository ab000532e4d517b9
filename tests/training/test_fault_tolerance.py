"""Fault tolerance: a SIGKILLed run resumes at the step it saved and ends as an uninterrupted run; a
non-finite loss stops training, names the task and leaves the last good state loadable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import DEMO_CONFIG, REPO_ROOT, TINY_OVERRIDES

# 144 training rows, batch 32: 5 steps an epoch; a checkpoint every 2 steps and at each epoch end.
OVERRIDES = [*TINY_OVERRIDES, "training.epochs=4", "training.checkpoint_every=2", "training.early_stopping_patience=9"]


def _command(run_dir) -> list[str]:
    command = [sys.executable, "train.py", "--config", str(DEMO_CONFIG), "--output-dir", str(run_dir)]
    for override in OVERRIDES:
        command += ["--set", override]
    return [*command, "--no-export", "--quiet"]


def _weights(path):
    from keras_mtmm.run_folder import load_checkpoint

    return [np.asarray(w) for w in load_checkpoint(path).get_weights()]


@pytest.mark.slow  # ~65 s alone: three train.py processes
def test_a_killed_run_resumes_at_its_last_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    whole = subprocess.run(_command(tmp_path / "whole"), cwd=REPO_ROOT, env=env, capture_output=True, timeout=600)
    assert whole.returncode == 0, whole.stderr.decode()[-3000:]

    run_dir = tmp_path / "killed"
    process = subprocess.Popen(
        _command(run_dir), cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    latest = run_dir / "backup" / "latest.json"
    deadline = time.monotonic() + 300
    state = None
    while time.monotonic() < deadline and process.poll() is None:
        if latest.is_file():
            state = json.loads(latest.read_text())
            if state["global_step"] >= 4:  # the second checkpoint (steps 2 and 4 of epoch 0)
                process.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    state = json.loads(latest.read_text())  # what the killed run left: a complete state
    assert state["global_step"] >= 4

    resumed = subprocess.run(_command(run_dir), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at epoch {state['epoch']} step {state['step']}" in resumed.stdout
    assert not (run_dir / "backup").exists()

    for a, b in zip(_weights(tmp_path / "whole" / "best.keras"), _weights(run_dir / "best.keras")):
        np.testing.assert_array_equal(a, b)
    history = json.loads((run_dir / "history.json").read_text())
    expected = json.loads((tmp_path / "whole" / "history.json").read_text())
    assert history["epoch"] == expected["epoch"] == [0, 1, 2, 3]
    for key in ("loss", "val_loss", "shape_loss", "price_loss"):  # the resumed epoch's means cover all its steps
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-6, err_msg=key)


def test_a_non_finite_loss_stops_training_names_the_task_and_keeps_the_last_state(tmp_path, tiny_config_factory):
    from keras_mtmm.errors import TrainingDiverged
    from keras_mtmm.training.checkpointing import read_training_state, restore_training_state
    from keras_mtmm.training.run import train

    # A learning rate this large sends the regression head to inf within a few steps.
    config = tiny_config_factory(
        "training.epochs=3", "training.checkpoint_every=1", "training.learning_rate=1e12", "weighting.strategy=static"
    )
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as caught:
        train(config, output_dir=run_dir, export_dir=tmp_path / "models", verbose=0)
    message = str(caught.value)
    assert "non-finite task losses:" in message and "nothing was exported" in message
    named = message.split("non-finite task losses: ")[1].split(")")[0].split(", ")
    assert set(named) <= set(config.tasks) and named, message
    assert not (tmp_path / "models").exists(), "no export from a poisoned model"
    state = read_training_state(run_dir / "backup")
    assert state is not None
    from keras_mtmm.models.multitask import compile_model
    from keras_mtmm.models.network import build_model
    from keras_mtmm.preprocessing.preprocessor import Preprocessor

    preprocessor = Preprocessor.load(run_dir / "preprocessor")
    model = compile_model(build_model(config, preprocessor), config, preprocessor, {t: 1.0 for t in config.tasks})
    restore_training_state(model, run_dir / "backup", state)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights()), "the kept state is a good one"


def test_the_cli_reports_divergence_with_exit_status_2(tmp_path):
    command = _command(tmp_path / "run")
    command += ["--set", "training.learning_rate=1e12", "--set", "training.checkpoint_every=1"]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "error: training: the loss became" in completed.stderr
    assert "Traceback" not in completed.stderr


# (-m slow: the default run resumes from the last finished epoch in test_training.py)
@pytest.mark.slow
def test_an_interrupted_run_resumes_inside_an_epoch_in_process(tmp_path, tiny_config_factory, monkeypatch):
    """The default-run twin of the SIGKILL test: interrupted after step 3 (state saved at step 2)."""
    from keras_mtmm.training.checkpointing import StepCheckpoint
    from keras_mtmm.training.run import train

    overrides = ("training.epochs=2", "training.checkpoint_every=2", "training.early_stopping_patience=9")
    whole = train(tiny_config_factory(*overrides), output_dir=tmp_path / "whole", export=False, verbose=0)

    original = StepCheckpoint.on_train_batch_end

    def interrupt_after_step_3(self, batch, logs=None):
        original(self, batch, logs)
        if self.epoch == 0 and self._step(batch) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(StepCheckpoint, "on_train_batch_end", interrupt_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config_factory(*overrides), output_dir=tmp_path / "run", export=False, verbose=0)
    latest = json.loads((tmp_path / "run" / "backup" / "latest.json").read_text())
    assert (latest["epoch"], latest["step"]) == (0, 2)
    monkeypatch.setattr(StepCheckpoint, "on_train_batch_end", original)
    from keras_mtmm.errors import ConfigError

    with pytest.raises(ConfigError, match="holds an interrupted run of a different config"):
        train(tiny_config_factory(*overrides, "training.learning_rate=0.01"), output_dir=tmp_path / "run", verbose=0)
    assert json.loads((tmp_path / "run" / "backup" / "latest.json").read_text()) == latest  # nothing lost
    resumed = train(tiny_config_factory(*overrides), output_dir=tmp_path / "run", export=False, verbose=0)
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(resumed.history["loss"], whole.history["loss"], rtol=1e-6)
