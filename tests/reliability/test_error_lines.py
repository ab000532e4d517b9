"""What a user sees on a mistake, as a process: exactly one `error:` line on stderr and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ..conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("name: demo\nseed: 1\nname: again\n", "duplicate key 'name'"),
        (
            "name: x\ndata: {source: csv, path: missing.csv}\n"
            "modalities: {n: {type: numeric, columns: [a]}}\ntasks: {y: {type: regression, label: y}}\n",
            "cannot open CSV",
        ),
    ],
    ids=["config", "data"],
)
def test_one_error_line_and_nothing_else_on_stderr(tmp_path, config, expected):
    path = tmp_path / "c.yaml"
    path.write_text(config, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TF_CPP", "KERAS_MTMM"))}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr


@pytest.mark.parametrize("flag", ["--output-dir", "--export-dir"])
def test_an_output_folder_that_is_a_file_is_refused_before_anything_runs(tmp_path, capsys, flag):
    from keras_mtmm.cli.commands import main

    from ..conftest import DEMO_CONFIG

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    argv = ["train", "--config", str(DEMO_CONFIG), "--set", "data.num_examples=50", flag, str(blocker / "sub")]
    if flag == "--export-dir":
        argv += ["--output-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {flag}: '{blocker / 'sub'}' is inside '{blocker}', which is a file, not a folder; "
        "pass a folder (it is created if missing)"
    )
    assert not (tmp_path / "run").exists()
