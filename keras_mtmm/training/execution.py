"""How a training run executes: the `auto` choices of `training.cache`, `steps_per_execution`, `jit_compile`.

The defaults are the fast path where it is safe, and each choice is made
from what the run knows (the data's size, the epoch's length, the devices)
and said in the run log and `metadata.json` (`execution`):

- `cache: auto`: the training split is preprocessed once and kept in memory
  (examples reshuffled every epoch, see `data.pipeline._cached`) when its
  preprocessed size fits `cache_budget()` (at most 1 GiB, and a quarter of the
  memory available); streamed or mixed data, and distributed runs, are not.
- `steps_per_execution: auto`: up to `MAX_STEPS_PER_EXECUTION` steps per
  call into TensorFlow, for epochs of `MIN_STEPS_FOR_MULTI` steps or more.
  When the epoch is one pass over the cached data (`cache` on, no
  `training.steps_per_epoch`, no `checkpoint_every`, one device), each epoch
  gets a dataset of its own pass, which ends where the pass does, so an
  execution may stop short at the end of the epoch (`epoch_passes`): any
  number works. Otherwise the training data is one endless stream, Keras
  runs whole executions from it, and the number must divide the epoch (and
  `checkpoint_every`): the largest such divisor is taken.
- `jit_compile: auto`: XLA where an accelerator is present, as Keras
  decides, and no TF Hub module is in the model; on CPU-only machines off
  (measured: XLA's compile costs more than 8 epochs of the MMoE benchmark
  save; see benchmarks/mmoe_csv_end_to_end.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from keras_mtmm.data.pipeline import prepared_size
from keras_mtmm.data.tables import StreamSplit
from keras_mtmm.run_folder import RunFolder

MAX_STEPS_PER_EXECUTION = 32
# Below this many steps per epoch, `auto` runs one step per execution: tracing the multi-step loop
# costs seconds (measured 1-5 s on the tiny test models), more than it saves on short epochs.
MIN_STEPS_FOR_MULTI = 64
CACHE_LIMIT_BYTES = 1 << 30


@dataclass
class ExecutionPlan:
    """The resolved settings of one run, and why."""

    cache: bool
    steps_per_execution: int
    jit_compile: bool
    deterministic: bool
    reasons: dict[str, str]
    # One dataset per epoch (its pass over the cache), not one stream over all epochs (see the module doc).
    epoch_passes: bool = False

    def describe(self) -> str:
        """One log line: `execution: cache on (...), 21 steps per execution (...), XLA off (...), ...`."""
        parts = [
            f"cache {'on' if self.cache else 'off'} ({self.reasons['cache']})",
            f"{self.steps_per_execution} step{'s' if self.steps_per_execution != 1 else ''} per execution"
            f" ({self.reasons['steps_per_execution']})",
            f"XLA {'on' if self.jit_compile else 'off'} ({self.reasons['jit_compile']})",
            f"deterministic ops {'on' if self.deterministic else 'off'}",
        ]
        return "execution: " + ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


def cache_budget() -> int:
    """Bytes the preprocessed training data may take in memory: 1 GiB, or a quarter of what is available."""
    available = _available_memory()
    return min(CACHE_LIMIT_BYTES, available // 4) if available else CACHE_LIMIT_BYTES


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def resolve_cache(setting, size_bytes: int | None, streamed: bool, distribute: str) -> tuple[bool, str]:
    """`training.cache` (true, false or auto) for a training split of `size_bytes` once preprocessed."""
    if setting is not True and setting is not False:  # auto
        if streamed:
            return False, "auto: the training data is mixed from several datasets"
        if distribute != "none":
            return False, f"auto: not with distribute {distribute}"
        budget = cache_budget()
        if size_bytes is None or size_bytes > budget:
            return False, f"auto: {_size(size_bytes)} preprocessed is over the {_size(budget)} budget"
        return True, f"auto: {_size(size_bytes)} preprocessed, within the {_size(budget)} budget"
    if setting and streamed:
        return False, "the training data is mixed from several datasets"
    return bool(setting), "training.cache"


def resolve_steps_per_execution(
    setting, steps_per_epoch: int | None, checkpoint_every: int, distribute: str, epoch_passes: bool = False
):
    """(steps, reason): `training.steps_per_execution` (`auto`: up to 32), as a divisor of the epoch.

    Keras runs whole executions from the endless training stream: a number that
    does not divide the epoch would train each epoch on more batches than it has.
    With `epoch_passes` (each epoch its own dataset, which ends with the epoch)
    the last execution of an epoch stops short, and any number works.
    """
    if distribute == "multi_worker":
        return 1, "multi_worker runs its own loop, one step per call"
    limit = MAX_STEPS_PER_EXECUTION if setting == "auto" else setting
    if epoch_passes and steps_per_epoch:
        if setting != "auto":
            return setting, "training.steps_per_execution"
        if steps_per_epoch < MIN_STEPS_FOR_MULTI:
            return 1, f"auto: an epoch of {steps_per_epoch} steps is too short to gain from more"
        return min(limit, steps_per_epoch), f"auto: up to {limit}, the last execution of an epoch stops at its end"
    if not steps_per_epoch:
        return limit, "auto" if setting == "auto" else "training.steps_per_execution"
    whole = math.gcd(steps_per_epoch, checkpoint_every) if checkpoint_every else steps_per_epoch
    steps = max(d for d in range(1, min(whole, limit) + 1) if whole % d == 0)
    of = f"{steps_per_epoch} steps per epoch"
    if checkpoint_every:
        of += f" and checkpoint_every {checkpoint_every}"
    if setting == "auto":
        if steps_per_epoch < MIN_STEPS_FOR_MULTI:
            return 1, f"auto: an epoch of {steps_per_epoch} steps is too short to gain from more"
        return steps, f"auto: the largest divisor of {of} up to {limit}"
    if steps != setting:
        return steps, f"training.steps_per_execution {setting} lowered to a divisor of {of}"
    return steps, "training.steps_per_execution"


def resolve_jit_compile(setting, distribute: str, hub_modalities: list[str] | None = None) -> tuple[bool, str]:
    """`training.jit_compile`: `auto` is XLA on accelerators only (no distribution, no TF Hub module:
    a SavedModel's ops need not compile), as Keras' own `auto`."""
    if setting is True or setting is False:
        return setting, "training.jit_compile"
    if distribute != "none":
        return False, f"auto: not with distribute {distribute}"
    if hub_modalities:
        return False, f"auto: not with the TF Hub encoder of {', '.join(hub_modalities)}"
    import tensorflow as tf

    if any(device.device_type != "CPU" for device in tf.config.list_physical_devices()):
        return True, "auto: an accelerator is present"
    return False, "auto: CPU only, where compiling costs more than it saves on short runs"


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "an unknown size"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{size_bytes} B"


def plan_execution(config, preprocessor, train_split, steps_per_epoch: int | None, resumed_run=None) -> ExecutionPlan:
    """The run's `ExecutionPlan`; a resumed run (`resumed_run`: its folder) keeps the plan it started with,
    so it reads the same training stream even on a machine with other memory or devices."""
    if resumed_run is not None:
        saved = RunFolder(resumed_run).read_json(RunFolder.METADATA, {}).get("execution")
        if saved:
            saved["reasons"] = {key: "as when the run started" for key in saved["reasons"]}
            return ExecutionPlan(**saved)
    training = config.training
    streamed = isinstance(train_split, StreamSplit)
    size = None
    if training.cache == "auto" and not streamed and training.distribute == "none":
        skip_bad = config.data.on_bad_record == "skip"
        size, _ = prepared_size(preprocessor, train_split, training.batch_size, skip_bad)
    cache, cache_reason = resolve_cache(training.cache, size, streamed, training.distribute)
    epoch_passes = epoch_is_one_pass(config, cache, steps_per_epoch)
    steps, steps_reason = resolve_steps_per_execution(
        training.steps_per_execution, steps_per_epoch, training.checkpoint_every, training.distribute, epoch_passes
    )
    hub = [name for name, modality in config.modalities.items() if modality.encoder.type == "hub"]
    jit, jit_reason = resolve_jit_compile(training.jit_compile, training.distribute, hub)
    reasons = {"cache": cache_reason, "steps_per_execution": steps_reason, "jit_compile": jit_reason}
    return ExecutionPlan(cache, steps, jit, training.deterministic, reasons, epoch_passes)


def epoch_is_one_pass(config, cache: bool, steps_per_epoch: int | None) -> bool:
    """Whether each epoch can be its own dataset: one pass over the cached training data.

    Not with `training.steps_per_epoch` (an epoch is not a pass), `checkpoint_every`
    (a resumed run re-enters the stream inside an epoch) or distribution.
    """
    training = config.training
    return bool(
        cache
        and steps_per_epoch
        and not training.steps_per_epoch
        and not training.checkpoint_every
        and training.distribute == "none"
    )
