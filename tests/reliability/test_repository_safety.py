"""The model repository under concurrency and hostile files: nothing lost, no link followed, flags checked first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from keras_mtmm.cli.commands import main
from keras_mtmm.errors import UserError
from keras_mtmm.export.repository import (
    MAX_VERSION,
    check_version,
    prune_versions,
    publish_version,
    read_models_config,
    register_model,
)

WRITER = textwrap.dedent(
    """
    import sys, time, uuid
    from pathlib import Path
    from keras_mtmm.export.repository import publish_version

    export_dir, name, start = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    staging = export_dir / ".tmp" / uuid.uuid4().hex
    staging.mkdir(parents=True)
    (staging / "saved_model.pb").write_bytes(b"x")
    time.sleep(max(0.0, start - time.time()))  # every writer starts at the same moment
    print(publish_version(export_dir, name, staging).name)
    """
)


def _versions(export_dir, name):
    return sorted(int(p.name) for p in (export_dir / name).iterdir() if p.name.isdigit())


def test_concurrent_exports_lose_no_entry_and_get_distinct_versions(tmp_path):
    names = [f"model_{i % 3}" for i in range(6)]  # 3 models, 2 exports each, 6 processes at once
    start = time.time() + 6.0  # (each writer imports TensorFlow first: seconds on a loaded machine)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), name, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    results = [writer.communicate(timeout=120) for writer in writers]
    assert all(writer.returncode == 0 for writer in writers), [err for _, err in results]
    config = read_models_config(tmp_path)
    assert sorted(entry.name for entry in config.model_config_list.config) == sorted(set(names))
    for name in set(names):
        assert _versions(tmp_path, name) == [1, 2]
    assert not list(tmp_path.glob(".models.config*.tmp"))


def test_a_planted_link_is_never_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "models.config").symlink_to(outside)
    (repo / "batching_parameters.txt").symlink_to(outside)
    with pytest.raises(UserError, match="models.config: is a symbolic link"):
        register_model(repo, "demo")
    assert outside.read_text() == "precious\n"
    (repo / "models.config").unlink()
    register_model(repo, "demo")
    assert outside.read_text() == "precious\n"  # the planted template link was left alone, not written
    assert "demo" in (repo / "models.config").read_text()


def test_pruning_a_linked_version_removes_the_link_not_its_target(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    repo = tmp_path / "repo"
    (repo / "demo").mkdir(parents=True)
    (repo / "demo" / "1").symlink_to(target, target_is_directory=True)
    for version in (2, 3):
        (repo / "demo" / str(version)).mkdir()
    assert prune_versions(repo, "demo", keep=1) == [1, 2]
    assert (target / "keep.txt").exists()
    assert _versions(repo, "demo") == [3]


def test_a_linked_model_folder_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "demo").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    staging = tmp_path / ".tmp" / "x"
    staging.mkdir(parents=True)
    with pytest.raises(UserError, match="symbolic link"):
        publish_version(tmp_path, "demo", staging)
    assert not list((tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize("version", [0, -1, MAX_VERSION + 1, 10**20, True, 1.5])
def test_versions_are_positive_int64(version):
    with pytest.raises(UserError, match="whole number from 1 to"):
        check_version(version)


@pytest.mark.parametrize(
    "flags",
    [
        ["--version", "-1"],
        ["--version", "0"],
        ["--version", "99999999999999999999"],
        ["--keep", "0"],
        ["--label", "bad-label"],
    ],
)
def test_a_refused_export_flag_writes_nothing(tiny_run, tmp_path, capsys, flags):
    repo = tmp_path / "repo"
    assert main(["export", "--run", str(tiny_run.run_dir), "--export-dir", str(repo), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not list(repo.glob("*/*")) if repo.exists() else True


@pytest.mark.parametrize("name", ["../escape", "a/b", "has space", "x" * 65, ".hidden", "back\\slash"])
def test_the_label_command_refuses_a_bad_model_name(tmp_path, capsys, name):
    assert main(["label", name, "1", "stable", "--export-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: name: ")
    assert not (tmp_path / "models.config").exists()
