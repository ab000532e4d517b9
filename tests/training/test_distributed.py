"""tf.distribute: `mirrored` on 2 logical CPU devices trains exactly as `none` on the same global batch.

Exactness rests on keras_mtmm.training.distributed (global-batch task losses under label masks, the weighting's
own variables, all-reduced Jacobians for gradient strategies) and on a training stream whose order
does not depend on the strategy (data/pipeline.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from keras_mtmm.config.loading import load_config
from keras_mtmm.errors import ConfigError
from tests.conftest import DEMO_CONFIG, REPO_ROOT


@pytest.mark.slow  # ~40 s alone per case: two trainings in a subprocess
@pytest.mark.parametrize("weighting", ["uncertainty", "pcgrad"])
def test_mirrored_on_two_devices_matches_one_device(tmp_path, weighting):
    script = REPO_ROOT / "tests" / "support" / "mirrored_vs_none.py"
    completed = subprocess.run(
        [sys.executable, str(script), str(tmp_path), f"weighting.strategy={weighting}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "training on 2 replicas (mirrored)" in completed.stdout
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    none, mirrored = result["none"], result["mirrored"]
    for key in ("loss", "val_loss", "shape_loss", "premium_loss", "price_loss"):
        np.testing.assert_allclose(mirrored["history"][key], none["history"][key], rtol=1e-5, err_msg=key)
    for a, b in zip(mirrored["weights"], none["weights"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_distribute_choices_are_checked():
    with pytest.raises(ConfigError, match="did you mean 'mirrored'"):
        load_config(DEMO_CONFIG, ["training.distribute=mirored"])


def _weights(path):
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


@pytest.mark.slow  # ~60 s alone on 2 cores: two TF processes plus the single-worker reference
def test_two_workers_train_as_one_with_a_gradient_strategy(tmp_path):
    """2 local workers (mtmm launch, TF_CONFIG on loopback) with PCGrad: identical weights on both, equal to one
    worker training on the same global batches; only the chief writes the run folder."""
    script = str(REPO_ROOT / "tests" / "support" / "train_and_save.py")
    strategy = "weighting.strategy=pcgrad"
    launch = [sys.executable, "-m", "keras_mtmm.cli.commands", "launch", "--workers", "2", "--timeout", "500"]
    workers = subprocess.run(
        [*launch, "--", sys.executable, script, str(tmp_path), "multi_worker", strategy],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert workers.returncode == 0, (workers.stdout + workers.stderr)[-4000:]
    assert "[worker 0] training on 2 replicas (multi_worker); this process: worker 0 (chief)" in workers.stdout
    single = subprocess.run(
        [sys.executable, script, str(tmp_path), "none", strategy], cwd=REPO_ROOT, capture_output=True, timeout=600
    )
    assert single.returncode == 0, single.stderr.decode()[-3000:]

    chief, other = _weights(tmp_path / "weights_multi_worker_0.npz"), _weights(tmp_path / "weights_multi_worker_1.npz")
    reference = _weights(tmp_path / "weights_none_0.npz")
    for a, b, c in zip(chief, other, reference):
        np.testing.assert_array_equal(a, b)  # the workers hold one model
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)  # ... the one a single worker trains
    history = json.loads((tmp_path / "history_multi_worker_0.json").read_text())
    expected = json.loads((tmp_path / "history_none_0.json").read_text())
    for key in ("loss", "val_loss", "shape_loss", "price_loss", "premium_accuracy"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, err_msg=key)
    run = tmp_path / "run_multi_worker"
    assert (run / "best.keras").is_file() and (run / "history.json").is_file()
    assert not list(tmp_path.glob("keras_mtmm_worker_*")), "worker 1 wrote only to a temporary folder"


def test_multi_worker_without_a_cluster_is_a_clear_error(tmp_path, monkeypatch):
    from keras_mtmm.training.run import train

    monkeypatch.delenv("TF_CONFIG", raising=False)
    config = load_config(DEMO_CONFIG, ["training.distribute=multi_worker"])
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        train(config, output_dir=tmp_path / "run", export=False, verbose=0)


def _worker_pid(script: str, index: int) -> int | None:
    """The pid of the launched worker with TF_CONFIG task index `index` (Linux /proc)."""
    from pathlib import Path

    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if script not in (proc / "cmdline").read_bytes().decode(errors="replace"):
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"TF_CONFIG=") and json.loads(entry[10:])["task"]["index"] == index:
                return int(proc.name)
    return None


@pytest.mark.slow
def test_a_killed_worker_stops_the_cluster_and_a_rerun_resumes_where_the_chief_saved(tmp_path):
    import os
    import signal
    import time

    script = str(REPO_ROOT / "tests" / "support" / "train_and_save.py")
    overrides = ["training.epochs=4", "training.checkpoint_every=2", "training.early_stopping_patience=9"]
    launch = [sys.executable, "-m", "keras_mtmm.cli.commands", "launch", "--workers", "2", "--timeout", "500", "--"]
    command = [*launch, sys.executable, script, str(tmp_path), "multi_worker", *overrides]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    latest = tmp_path / "run_multi_worker" / "backup" / "latest.json"
    deadline = time.monotonic() + 400
    killed = False
    while time.monotonic() < deadline and process.poll() is None and not killed:
        if latest.is_file() and json.loads(latest.read_text())["global_step"] >= 4:
            pid = _worker_pid(script, 1)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed = True
        time.sleep(0.02)
    out, err = process.communicate(timeout=120)
    assert killed, "the run finished before a worker could be killed"
    assert process.returncode == 128 + signal.SIGKILL, (out + err)[-3000:]
    assert "error: worker 1 exited with status 137 (killed by signal SIGKILL); stopped the other workers" in err
    state = json.loads(latest.read_text())

    resumed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    for worker in (0, 1):
        assert f"[worker {worker}] resuming the interrupted run" in resumed.stdout
        assert f"at epoch {state['epoch']} step {state['step']}" in resumed.stdout
    single = subprocess.run(
        [sys.executable, script, str(tmp_path), "none", *overrides], cwd=REPO_ROOT, capture_output=True, timeout=600
    )
    assert single.returncode == 0, single.stderr.decode()[-3000:]
    reference = _weights(tmp_path / "weights_none_0.npz")
    for a, b in zip(_weights(tmp_path / "weights_multi_worker_0.npz"), reference):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
