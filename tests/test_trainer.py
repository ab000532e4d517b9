"""The Trainer's named phases: they run in order, and a subclass replaces one and keeps the others."""

from __future__ import annotations

import keras

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
