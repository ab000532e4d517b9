"""The command line as a user meets it: exit status 2 and one `error:` line for user mistakes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.conftest import DEMO_CONFIG, REPO_ROOT


def run(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def write_config(tmp_path, mutate) -> str:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    mutate(raw)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["training"].update(epochz=1), "error: training.epochz: unknown key; did you mean 'epochs'?"),
        (
            lambda c: c["training"].update(batch_size="big"),
            "error: training.batch_size: expected an integer, got str 'big'",
        ),
        (
            lambda c: c["fusion"].update(strategy="lat"),
            "error: fusion.strategy: unknown fusion.strategy 'lat'; "
            "choose one of: attention, cross_attention, early, gated, intermediate, late, low_rank, weighted; "
            "did you mean 'late'?",
        ),
        (
            lambda c: (c.update(tasks={"price": c["tasks"]["price"]}), c["weighting"].update(strategy="pcgrad")),
            "error: weighting.strategy: 'pcgrad' combines the gradients of several tasks",
        ),
        (
            lambda c: c["sharing"].update(type="ple", num_levels=0),
            "error: sharing.num_levels: expected a positive integer, got 0",
        ),
        (
            lambda c: c["sharing"].update(type="mmoe", num_experts=0),
            "error: sharing.num_experts: expected a positive integer, got 0",
        ),
    ],
    ids=["unknown-key", "wrong-type", "unknown-strategy", "pcgrad-one-task", "ple-no-levels", "no-experts"],
)
def test_config_errors_exit_2_with_one_line(tmp_path, capsys, mutate, expected):
    """In process (`mtmm train` is `train.py`'s main; an escaping exception would fail the test); the
    other tests here run the scripts as a user does, in a process of their own."""
    from keras_mtmm.cli.commands import main

    status = main(["train", "--config", write_config(tmp_path, mutate), "--output-dir", str(tmp_path / "run")])
    stderr = capsys.readouterr().err
    assert status == 2, stderr
    assert stderr.strip().splitlines()[-1].startswith(expected), stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "run").exists(), "a bad config must not leave a run folder behind"


def test_bad_set_override_exits_2(tmp_path):
    result = run("train.py", "--set", "training.epocs=1", "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1].startswith("error: training.epocs: unknown key; did you mean 'epochs'?")
    )


def test_evaluate_with_a_path_that_is_not_a_model_exits_2(tmp_path):
    result = run("evaluate.py", "--model", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --model:")
    assert "Traceback" not in result.stderr


def test_unknown_flag_exits_2():
    result = run("train.py", "--epochs", "3")
    assert result.returncode == 2
    assert "unrecognized arguments: --epochs" in result.stderr


def test_csv_missing_a_configured_column_exits_2_naming_it(tmp_path):
    data = tmp_path / "items.csv"
    data.write_text("description,price\nred box,3.5\nblue ball,\n")
    config = {
        "name": "items",
        "data": {"source": "csv", "path": str(data)},
        "modalities": {"words": {"type": "text", "columns": ["description"]}},
        "tasks": {
            "price": {"type": "regression", "label": "price"},
            "kind": {"type": "multiclass", "label": "category"},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run("train.py", "--config", str(path), "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {data}: column 'category': is configured but not in the CSV")
    assert "the CSV has: description, price" in line
    assert not (tmp_path / "run").exists()


def test_output_piped_into_a_closed_reader_ends_quietly():
    """`evaluate.py ... | head`: when the reader goes away, no BrokenPipeError traceback."""
    script = (
        "import sys\n"
        "from keras_mtmm.cli import commands as cli\n"
        "def many_lines(args):\n"
        "    for i in range(200000):\n"
        "        print('metric', i)\n"
        "cli._serve = many_lines\n"
        "sys.exit(cli.main(['serve', '--dry-run']))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    child.stdout.read(10)
    child.stdout.close()  # what `| head` does once it has its lines
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=300) == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
