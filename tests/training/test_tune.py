"""`mtmm tune`: a random search on tiny generated data, its records and best.yaml, resuming, bad spaces,
the objective of a trial, and (under -m slow) a search killed mid-trial and a 2-worker distributed search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from keras_mtmm.cli import main
from keras_mtmm.config.tune import TuneObjective
from keras_mtmm.training.tune import objective_of, trial_config, tuner_environment

pytest.importorskip("keras_tuner")

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"source": "sentences", "num_examples": 160},
    "modalities": {
        "sentence": {
            "type": "text",
            "columns": ["text"],
            "text": {"max_tokens": 100, "sequence_length": 16},
            "encoder": {"type": "bag", "units": 16},
        }
    },
    "sharing": {"type": "hard", "tower_units": [8]},
    "tasks": {"sentiment": {"type": "binary", "label": "sentiment"}},
    "training": {"epochs": 2, "batch_size": 32},
    "tune": {
        "objective": {"metric": "val_loss", "direction": "min"},
        "algorithm": "random",
        "max_trials": 4,
        "space": {
            "sharing.type": {"choice": ["hard", "mmoe"]},
            "training.learning_rate": {"float": [0.0003, 0.03], "log": True},
        },
    },
}


def write_config(folder, **tune) -> str:
    raw = {**TINY, "tune": {**TINY["tune"], **tune}}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


def run_tune(capsys, *args) -> tuple[int, str, str]:
    status = main(["tune", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune")
    config = write_config(folder)
    assert main(["tune", "--config", config, "--output-dir", str(folder / "tune")]) == 0
    return folder, config


def test_a_random_search_records_every_trial_and_its_best(search):
    folder, _ = search
    tune = folder / "tune"
    records = json.loads((tune / "trials.json").read_text())
    assert [r["trial"] for r in records] == ["0", "1", "2", "3"]
    assert all(r["status"] == "COMPLETED" for r in records)
    for record in records:  # the objective: val_loss at the kept epoch of the trial's own history
        history = json.loads((tune / record["run"] / "history.json").read_text())
        assert record["objective"] == pytest.approx(min(history["val_loss"]))
        config = yaml.safe_load((tune / record["run"] / "config.yaml").read_text())
        assert config["sharing"]["type"] == record["values"]["sharing.type"]
        assert config["training"]["learning_rate"] == pytest.approx(record["values"]["training.learning_rate"])
    best = min(records, key=lambda r: r["objective"])
    assert (tune / "best.yaml").read_text() == (tune / best["run"] / "config.yaml").read_text()
    assert (tune / "report.html").exists() and (tune / "tuning_sharing.type.png").exists()


def test_the_leaderboard_ranks_the_records_and_a_rerun_resumes_without_training(search, capsys):
    folder, config = search
    args = ["--config", config, "--output-dir", str(folder / "tune"), "--no-report"]
    status, out, _ = run_tune(capsys, *args, "--export-best", "--export-dir", str(folder / "models"))
    assert status == 0 and "run folder:" not in out  # every trial is finished: nothing is trained again
    assert (folder / "models" / "tiny" / "1" / "saved_model.pb").exists()  # the best trial, exported
    records = json.loads((folder / "tune" / "trials.json").read_text())
    ranked = sorted(records, key=lambda r: r["objective"])
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [row[1] for row in rows] == [r["trial"] for r in ranked]
    assert f"best: trial {ranked[0]['trial']}" in out


def test_more_trials_run_only_the_new_ones_and_overwrite_starts_over(search, capsys, tmp_path):
    folder, config = search
    copy = tmp_path / "tune"
    subprocess.run(["cp", "-r", str(folder / "tune"), str(copy)], check=True)
    before = {path.parent.name: path.stat().st_mtime_ns for path in copy.glob("trial_*/trial.json")}
    args = ["--config", config, "--output-dir", str(copy), "--no-report", "--set", "tune.max_trials=5"]
    status, out, _ = run_tune(capsys, *args)
    assert status == 0 and out.count("run folder:") == 1  # one new trial
    after = {path.parent.name: path.stat().st_mtime_ns for path in copy.glob("trial_*/trial.json")}
    assert set(after) == {*before, "trial_4"}
    assert all(after[name] == mtime for name, mtime in before.items())  # the finished ones: not run again
    args = ["--config", config, "--output-dir", str(copy), "--no-report", "--overwrite", "--set", "tune.max_trials=1"]
    status, out, _ = run_tune(capsys, *args)
    assert status == 0 and out.count("run folder:") == 1  # started over
    assert [p.name for p in copy.glob("trial_*")] == ["trial_0"]
    assert [r["trial"] for r in json.loads((copy / "trials.json").read_text())] == ["0"]


@pytest.mark.parametrize(
    ("space", "where"),
    [
        (
            {"sharing.typo": {"choice": ["hard"]}},
            r"tune\.space\.sharing\.typo: 'hard' gives sharing\.typo: unknown key",
        ),
        ({"fusion.strategy": {"choice": ["early", "gatd"]}}, r"tune\.space\.fusion\.strategy: 'gatd'"),
        ({"training.epochs": {"float": [1, 3]}}, r"tune\.space\.training\.epochs: 1\.0 gives .* an integer"),
        ({"training.learning_rate": {"float": [0.1, 0.01]}}, r"tune\.space\.training\.learning_rate\.float"),
        ({"training.learning_rate": {"range": [0.1, 1]}}, r"tune\.space\.training\.learning_rate\.range: unknown"),
    ],
)
def test_a_bad_space_is_exit_2_naming_the_key(tmp_path, capsys, space, where):
    import re

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"space": space}))
    status, out, err = run_tune(capsys, "--config", write_config(tmp_path), "--space", str(path))
    assert status == 2 and "run folder" not in out
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and re.search(where, err), err


def test_the_objective_is_read_at_the_kept_epoch_and_may_weigh_several_metrics():
    history = {"val_loss": [0.9, 0.5, 0.7], "val_a_accuracy": [0.6, 0.8, 0.9], "val_b_mae": [3.0, 2.0, 1.0]}
    assert objective_of(history, TuneObjective()) == (0.5, {"val_loss": 0.5}, 1)
    weighted = TuneObjective(metrics={"val_a_accuracy": 1.0, "val_b_mae": -0.1}, direction="max")
    value, metrics, kept = objective_of(history, weighted)
    assert (
        kept == 1 and value == pytest.approx(0.8 - 0.1 * 2.0) and metrics == {"val_a_accuracy": 0.8, "val_b_mae": 2.0}
    )


def test_a_trial_config_takes_its_values_and_hyperbands_epochs():
    base = {key: value for key, value in TINY.items() if key != "tune"}
    config = trial_config(base, {"sharing.type": "mmoe", "training.learning_rate": 0.01}, epochs=3)
    assert config.sharing.type == "mmoe" and config.training.learning_rate == 0.01 and config.training.epochs == 3
    assert "tune" not in base and base["sharing"]["type"] == "hard"  # (the base is not changed)


def test_mtmm_launch_makes_worker_0_the_chief_and_the_others_trial_workers():
    cluster = {"worker": ["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"]}
    for index, role in enumerate(["chief", "tuner0", "tuner1"]):
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        assert tuner_environment(env) == role
        assert env == {
            "KERASTUNER_TUNER_ID": role,
            "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": "5000",
        }
    assert tuner_environment({}) is None  # no cluster: one process runs the search


def _subprocess_env():
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.mark.slow
def test_a_search_killed_mid_trial_resumes_without_rerunning_finished_trials(tmp_path):
    config, out = write_config(tmp_path), tmp_path / "tune"
    command = [sys.executable, "-m", "keras_mtmm.cli", "tune", "--config", config, "--output-dir", str(out)]
    process = subprocess.Popen([*command, "--no-report"], env=_subprocess_env(), start_new_session=True)
    deadline = time.time() + 300
    while not (out / "trial_1" / "trial.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # (into trial 2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {path.parent.name: path.stat().st_mtime_ns for path in out.glob("trial_*/trial.json")}
    assert set(finished) >= {"trial_0", "trial_1"}
    subprocess.run([*command, "--no-report"], env=_subprocess_env(), check=True, capture_output=True)
    records = json.loads((out / "trials.json").read_text())
    assert [r["trial"] for r in records] == ["0", "1", "2", "3"] and all(r["status"] == "COMPLETED" for r in records)
    for name, mtime in finished.items():
        assert (out / name / "trial.json").stat().st_mtime_ns == mtime, name  # not run again


@pytest.mark.slow
def test_a_two_worker_distributed_search_runs_every_trial_once(tmp_path):
    config, out = write_config(tmp_path), tmp_path / "tune"
    tune = [sys.executable, "-m", "keras_mtmm.cli", "tune", "--config", config, "--output-dir", str(out), "--no-report"]
    launch = [sys.executable, "-m", "keras_mtmm.cli", "launch", "--workers", "3", "--timeout", "500", "--", *tune]
    done = subprocess.run(launch, env=_subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    records = json.loads((out / "trials.json").read_text())
    assert [r["trial"] for r in records] == ["0", "1", "2", "3"] and all(r["status"] == "COMPLETED" for r in records)
    assert {r["tuner"] for r in records} == {"tuner0", "tuner1"}  # both workers ran trials; the chief none
    assert "[worker 0] rank" in done.stdout


def test_mtmm_report_rebuilds_a_tuning_report_and_names_a_corrupt_trials_file(search, capsys, tmp_path):
    folder, _ = search
    (folder / "tune" / "report.html").unlink()
    assert main(["report", str(folder / "tune")]) == 0 and (folder / "tune" / "report.html").exists()
    broken = tmp_path / "tune"
    broken.mkdir()
    (broken / "trials.json").write_text("[{oops")
    capsys.readouterr()
    assert main(["report", str(broken)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {broken / 'trials.json'}: cannot be read as the search's trials")


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_each_algorithm_finds_the_learning_rate_that_learns(tmp_path, capsys, algorithm):
    """A known answer: at 1e-6 nothing is learnt in 2 epochs, at 0.02 the loss falls; 2 values, so 2 trials."""
    space = {"training.learning_rate": {"choice": [1e-6, 0.02]}}
    config = write_config(tmp_path, algorithm=algorithm, space=space)
    status, _, _ = run_tune(capsys, "--config", config, "--output-dir", str(tmp_path / "tune"), "--no-report")
    records = json.loads((tmp_path / "tune" / "trials.json").read_text())
    assert status == 0 and sorted(r["values"]["training.learning_rate"] for r in records) == [1e-6, 0.02]
    best = yaml.safe_load((tmp_path / "tune" / "best.yaml").read_text())
    assert best["training"]["learning_rate"] == 0.02


def test_hyperband_trains_each_trial_for_its_rounds_epochs(tmp_path, capsys):
    config = write_config(tmp_path, algorithm="hyperband", max_epochs=3, factor=3)
    status, _, _ = run_tune(capsys, "--config", config, "--output-dir", str(tmp_path / "tune"), "--no-report")
    records = json.loads((tmp_path / "tune" / "trials.json").read_text())
    assert status == 0 and records and {r["status"] for r in records} == {"COMPLETED"}
    for record in records:
        history = json.loads((tmp_path / "tune" / record["run"] / "history.json").read_text())
        assert record["epochs"] in (1, 3) and len(history["loss"]) == record["epochs"], record
    assert {r["epochs"] for r in records} == {1, 3}  # a first round of 1 epoch, the survivors trained for 3


def test_a_missing_keras_tuner_or_scipy_is_one_error_line_naming_the_pip_command(tmp_path, capsys, monkeypatch):
    import importlib.util

    config = write_config(tmp_path)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else find_spec(name, *a))
    out = tmp_path / "tune"
    status, _, err = run_tune(capsys, "--config", config, "--output-dir", str(out), "--set", "tune.algorithm=bayesian")
    assert status == 2 and err.startswith("error: tune.algorithm: bayesian optimisation needs scipy"), err
    monkeypatch.setitem(sys.modules, "keras_tuner", None)  # `import keras_tuner` now fails
    status, _, err = run_tune(capsys, "--config", config, "--output-dir", str(out))
    assert status == 2 and err.startswith("error: mtmm tune: it searches with KerasTuner, which is not installed")
    assert not out.exists()  # nothing written before the check
