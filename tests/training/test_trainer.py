"""The Trainer's named phases: they run in order, and a subclass replaces one and keeps the others."""

from __future__ import annotations

import keras
import pytest

from keras_mtmm.run_folder import RunFolder
from keras_mtmm.training.trainer import Trainer

PHASES = ["set_up", "prepare_data", "build", "make_callbacks", "fit", "finalize"]


class RecordingTrainer(Trainer):
    """Records each phase, adds a callback of its own and skips the test-split scoring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        self.epochs_seen: list[int] = []

    def set_up(self):
        self.calls.append("set_up")
        super().set_up()

    def prepare_data(self):
        self.calls.append("prepare_data")
        super().prepare_data()

    def build(self):
        self.calls.append("build")
        super().build()

    def make_callbacks(self):
        self.calls.append("make_callbacks")
        seen = self.epochs_seen

        class Epochs(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                seen.append(epoch)

        return [*super().make_callbacks(), Epochs()]

    def fit(self, callbacks):
        self.calls.append("fit")
        super().fit(callbacks)

    def finalize(self):
        self.calls.append("finalize")
        return super().finalize()

    def score_test(self, predict):
        return None  # replaced: no metrics.json


def test_the_phases_run_in_order_and_a_subclass_replaces_one(tmp_path, tiny_config_factory):
    config = tiny_config_factory("training.epochs=2")
    trainer = RecordingTrainer(config, output_dir=tmp_path / "run", export=False, verbose=0)
    result = trainer.run()
    assert trainer.calls == PHASES
    assert trainer.epochs_seen == [0, 1]  # the added callback ran beside the trainer's own
    run = RunFolder(result.run_dir)
    assert result.metrics is None and not (run / RunFolder.METRICS).exists()  # the replaced step
    assert run.is_finished() and (run / RunFolder.BEST).is_file()  # the other phases as always
    assert run.history()["epoch"] == [0, 1]


def test_the_logged_validation_metrics_are_the_evaluations_own(tiny_run):
    """One metric definition: history.json's val_<task>_<metric> of the kept epoch is what evaluate.py
    --split validation gives for best.keras (exact AUC, not Keras' 200-threshold estimate)."""
    from keras_mtmm.evaluation.evaluate import evaluate_model

    history = tiny_run.history
    kept = history["val_loss"].index(min(history["val_loss"]))
    report = evaluate_model(tiny_run.run_dir / RunFolder.BEST, split="validation", quiet=True)
    compared = 0
    for task, scores in report["tasks"].items():
        for metric, value in scores.items():
            if metric in ("loss", "labelled") or value is None:
                continue
            assert history[f"val_{task}_{metric}"][kept] == pytest.approx(value, rel=1e-6, abs=1e-9), (task, metric)
            compared += 1
    assert compared >= 5 and "val_premium_auc" in history
