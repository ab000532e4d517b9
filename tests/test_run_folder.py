"""RunFolder: the only place that names a run folder's files; atomic writes; what `--overwrite` removes."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import keras_mtmm
from keras_mtmm.errors import ConfigError
from keras_mtmm.files import write_json
from keras_mtmm.run_folder import RunFolder

PACKAGE = Path(keras_mtmm.__file__).parent
# Folder names that are also ordinary words (config keys, subcommands): not counted.
COMMON_WORDS = {"logs", "report", "seeds", "baselines", "preprocessor"}
NAMES = {value for key, value in vars(RunFolder).items() if key.isupper() and isinstance(value, str)}


def test_no_other_module_spells_a_run_folder_file_name():
    """A string literal equal to a run-folder file name anywhere but run_folder.py is a second owner."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "run_folder.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in NAMES - COMMON_WORDS:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)


def test_a_finished_run_is_refused_without_overwrite_and_clear_removes_only_the_run_files(tmp_path):
    run = RunFolder(tmp_path / "run")
    (run.path / RunFolder.BASELINES / "shape").mkdir(parents=True)
    run.write_config("name: x\n")
    run.write_metadata({"tasks": {}})
    (run.path / RunFolder.BACKUP).mkdir()
    run.check_not_finished(overwrite=False)  # an interrupted run: resumed or started over, not refused
    run.write_json(RunFolder.TIMINGS, {"total_s": 1.0})
    assert run.is_finished()
    with pytest.raises(ConfigError, match="holds a finished run"):
        run.check_not_finished(overwrite=False)
    run.check_not_finished(overwrite=True)
    (run.path / "notes.txt").write_text("mine")
    run.clear()
    assert sorted(p.name for p in run.path.iterdir()) == [RunFolder.BASELINES, "notes.txt"]


def test_writes_are_whole_and_reads_of_absent_or_corrupt_files_give_the_default(tmp_path):
    run = RunFolder(tmp_path)
    run.write_json(RunFolder.HISTORY, {"epoch": [0]})
    run.write_json(RunFolder.HISTORY, {"epoch": [0, 1]})
    assert json.loads((tmp_path / RunFolder.HISTORY).read_text()) == {"epoch": [0, 1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == [RunFolder.HISTORY]  # no staging file left
    assert run.history() == {"epoch": [0, 1]}
    assert run.read_json(RunFolder.METRICS, "absent") == "absent"
    (tmp_path / RunFolder.METRICS).write_text("{not json")
    assert run.read_json(RunFolder.METRICS) is None
    write_json(tmp_path / "compact.json", {"a": [1, 2]}, compact=True)
    assert (tmp_path / "compact.json").read_text() == '{"a":[1,2]}'


def test_the_seed_and_the_runs_of_other_seeds(tmp_path):
    run = RunFolder(tmp_path)
    assert run.seed() is None
    run.write_metadata({"reproducibility": {"seed": 42}})
    assert run.seed() == 42
    for seed in (44, 43):
        run.seed_run(seed).path.mkdir(parents=True)
    (tmp_path / RunFolder.SEEDS / "seed-x").mkdir()
    assert {seed: other.path.name for seed, other in run.other_seed_runs().items()} == {43: "seed-43", 44: "seed-44"}


def test_a_trained_run_loads_its_config_preprocessor_and_network(tiny_run):
    run = RunFolder(tiny_run.run_dir)
    assert run.is_run() and run.is_finished()
    assert run.load_config().to_yaml() == run.config_yaml()
    assert list(run.load_preprocessor().tasks) == list(tiny_run.preprocessor.tasks)
    assert set(run.load_network().output) == set(tiny_run.preprocessor.tasks)
