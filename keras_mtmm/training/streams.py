"""The training split as tf.data: its epoch length, the schedule of several mixed datasets, the one
deterministic training stream a resumed run re-enters at its step, and the validation batches."""

from __future__ import annotations

import tensorflow as tf

from keras_mtmm.data.pipeline import make_dataset, make_mixed_dataset
from keras_mtmm.data.sampling import build_sampler, describe_probabilities
from keras_mtmm.data.tables import StreamSplit, num_rows


class TrainingStreams:
    """The datasets of one run; `plan` (the `ExecutionPlan`) is set once it is known, before `training`."""

    def __init__(self, config, preprocessor, splits: dict, skipped: dict | None):
        self.config, self.preprocessor, self.splits = config, preprocessor, splits
        self.skip_bad = config.data.on_bad_record == "skip"
        self.valid_rows = (skipped or {}).get("valid_rows", {})
        self.steps_per_epoch: int | None = None
        self.plan = None
        self.pass_number = tf.Variable(0, dtype=tf.int64, trainable=False)  # the epoch's pass (plan.epoch_passes)

    def epoch_length(self) -> tuple[int | None, dict | None]:
        """`(training steps per epoch, the sampling metadata of several datasets or None)`; the steps are
        None where they are not known (skipped bad TFRecords with no count)."""
        training, train = self.config.training, self.splits["train"]
        if isinstance(train, StreamSplit):
            steps = training.steps_per_epoch or -(-num_rows(train) // training.batch_size)
            _, schedule = self.mixed(steps)
            sampling = {
                "mixing": self.config.data.mixing,
                "sampler": self.config.data.sampler,
                "sizes": {name: num_rows(part) for name, part in train.parts.items()},
                "steps_per_epoch": steps,
                "probabilities": schedule,
            }
            first, last = describe_probabilities(schedule[0]), describe_probabilities(schedule[-1])
            print(
                f"datasets mixed {self.config.data.mixing} ({self.config.data.sampler}): {first}"
                + (f" -> {last} (last epoch)" if first != last else "")
            )
            self.steps_per_epoch = steps
            return steps, sampling
        # A known epoch length makes the training data one repeated stream, which a resumed run re-enters
        # at the step it stopped (TFRecords with skipped bad records and no count: epochs restart instead).
        epoch_rows = self.valid_rows.get("train") if self.skip_bad else num_rows(train)
        steps = training.steps_per_epoch or (-(-epoch_rows // training.batch_size) if epoch_rows is not None else None)
        self.steps_per_epoch = steps
        return steps, None

    def mixed(self, steps):
        """`(dataset, schedule)` of several datasets mixed (`data.mixing`, `data.sampler`)."""
        config = self.config
        return make_mixed_dataset(
            self.preprocessor,
            self.splits["train"],
            config.training.batch_size,
            config.data.mixing,
            build_sampler(config.data.sampler, config.data.temperature),
            config.training.epochs,
            steps,
            seed=config.seed,
            shuffle_buffer=config.training.shuffle_buffer,
            skip_bad=self.skip_bad,
        )

    def training(self, skip_batches: int):
        """The training batches from `skip_batches` on: one deterministic stream over all epochs
        (with `plan.epoch_passes`: each iteration the pass of the epoch `pass_number` holds)."""
        if isinstance(self.splits["train"], StreamSplit):
            data, _ = self.mixed(self.steps_per_epoch)
            return data.skip(skip_batches) if skip_batches else data
        training, plan = self.config.training, self.plan
        return make_dataset(
            self.preprocessor,
            self.splits["train"],
            training.batch_size,
            shuffle=True,
            seed=self.config.seed,
            shuffle_buffer=training.shuffle_buffer,
            repeat=self.steps_per_epoch is not None and not plan.epoch_passes,
            cache=plan.cache,
            skip_bad=self.skip_bad,
            valid_rows=self.valid_rows.get("train"),
            skip_batches=0 if plan.epoch_passes else skip_batches,
            pass_number=self.pass_number if plan.epoch_passes else None,
        )

    def validation(self):
        """The validation batches, or None for an empty validation split."""
        if num_rows(self.splits["validation"]) == 0:
            return None
        return make_dataset(
            self.preprocessor,
            self.splits["validation"],
            self.config.training.batch_size,
            split="validation",
            skip_bad=self.skip_bad,
            valid_rows=self.valid_rows.get("validation"),
        )
