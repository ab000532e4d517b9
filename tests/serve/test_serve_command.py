"""`mtmm serve`: the exact tensorflow_model_server command for a repository, run locally or printed for Docker."""

from __future__ import annotations

import os
import shlex
import stat

import pytest

from keras_mtmm.cli.commands import main


@pytest.fixture
def repository(tmp_path):
    """A model repository as an export leaves it (models.config + server templates), without training."""
    from keras_mtmm.export.repository import register_model

    root = tmp_path / "saved_models"
    (root / "demo" / "1").mkdir(parents=True)
    register_model(root, "demo")
    return root.resolve()


def expected_flags(root, grpc=8500, rest=8501, poll=30, batching=True) -> list[str]:
    flags = [
        f"--port={grpc}",
        f"--rest_api_port={rest}",
        f"--model_config_file={root}/models.config",
        f"--model_config_file_poll_wait_seconds={poll}",
    ]
    if batching:
        flags += ["--enable_batching", f"--batching_parameters_file={root}/batching_parameters.txt"]
    return [*flags, f"--monitoring_config_file={root}/monitoring.config"]


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    """A `tensorflow_model_server` on PATH that writes its arguments to a file and exits with $FAKE_STATUS."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "tensorflow_model_server"
    script.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" > "$FAKE_ARGS"\nexit "${FAKE_STATUS:-0}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    arguments = tmp_path / "arguments.txt"
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_ARGS", str(arguments))
    return script, arguments


@pytest.fixture
def no_server(tmp_path, monkeypatch):
    """A PATH without tensorflow_model_server."""
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_dry_run_prints_the_local_command_and_starts_nothing(repository, fake_server, capsys):
    script, arguments = fake_server
    assert main(["serve", "--export-dir", str(repository), "--dry-run", "--poll-seconds", "5"]) == 0
    command = shlex.split(capsys.readouterr().out.strip())
    assert command == [str(script), *expected_flags(repository, poll=5)]
    assert not arguments.exists()


def test_serve_runs_the_binary_with_the_repository_flags(repository, fake_server, capsys, monkeypatch):
    script, arguments = fake_server
    flags = ["--port", "9000", "--rest-port", "9001", "--no-batching"]
    assert main(["serve", "--export-dir", str(repository), *flags]) == 0
    expected = expected_flags(repository, grpc=9000, rest=9001, batching=False)
    assert arguments.read_text().splitlines() == expected
    assert shlex.split(capsys.readouterr().out.strip()) == [str(script), *expected]
    monkeypatch.setenv("FAKE_STATUS", "3")  # the server's exit status is the command's
    assert main(["serve", "--export-dir", str(repository)]) == 3


def test_without_the_binary_the_docker_command_is_printed_and_exit_is_2(repository, no_server, capsys):
    assert main(["serve", "--export-dir", str(repository), "--docker-image", "tensorflow/serving:2.19.0"]) == 2
    captured = capsys.readouterr()
    command = shlex.split(captured.out.strip())
    root = str(repository)
    assert command == [
        "docker", "run", "--rm", "-p", "127.0.0.1:8500:8500", "-p", "127.0.0.1:8501:8501", "-v", f"{root}:{root}",
        "tensorflow/serving:2.19.0", *expected_flags(repository),
    ]  # fmt: skip
    assert captured.err.strip().splitlines()[-1].startswith("error: tensorflow_model_server: is not installed here")
    # The container sees the repository at the same path, so models.config's absolute base_path resolves.
    from keras_mtmm.export.repository import read_models_config

    (entry,) = read_models_config(repository).model_config_list.config
    assert entry.base_path == f"{root}/demo"
    assert "warning" not in captured.err

    assert main(["serve", "--export-dir", str(repository), "--dry-run", "--rest-port", "8080"]) == 0
    assert "-p 127.0.0.1:8080:8501" in capsys.readouterr().out


def test_the_docker_ports_are_published_on_loopback_unless_a_host_is_chosen(repository, no_server, capsys):
    assert main(["serve", "--export-dir", str(repository), "--dry-run", "--host", "0.0.0.0"]) == 0
    assert "-p 0.0.0.0:8500:8500 -p 0.0.0.0:8501:8501" in capsys.readouterr().out
    assert main(["serve", "--export-dir", str(repository), "--dry-run", "--host", "::1"]) == 0
    assert "-p '[::1]:8500:8500'" in capsys.readouterr().out
    assert main(["serve", "--export-dir", str(repository), "--dry-run", "--host", "my host"]) == 2
    assert capsys.readouterr().err.startswith("error: --host: expected an IP address, got 'my host'")


def test_a_local_server_run_says_it_binds_every_interface(repository, fake_server, capsys):
    assert main(["serve", "--export-dir", str(repository), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "warning: tensorflow_model_server has no listening-address flag and binds every interface" in err


def test_a_base_path_outside_the_mount_is_warned_about(repository, tmp_path, no_server, capsys):
    config = repository / "models.config"
    config.write_text(config.read_text().replace(f'"{repository}/demo"', f'"{tmp_path}/elsewhere/demo"'))
    assert main(["serve", "--export-dir", str(repository), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {config}: model 'demo' has base_path '{tmp_path}/elsewhere/demo', outside {repository}" in err


def test_an_empty_export_dir_or_bad_flags_exit_2(tmp_path, repository, no_server, capsys):
    assert main(["serve", "--export-dir", str(tmp_path / "nothing"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: --export-dir: '{tmp_path / 'nothing'}' has no models.config (nothing exported there yet); "
        "export a model first (python train.py, or mtmm export), or pass --export-dir"
    )
    assert main(["serve", "--export-dir", str(repository), "--port", "8501", "--dry-run"]) == 2
    assert "error: --rest-port: is the same as --port (8501)" in capsys.readouterr().err
    (repository / "batching_parameters.txt").unlink()
    assert main(["serve", "--export-dir", str(repository), "--dry-run"]) == 2
    assert "batching_parameters.txt: is missing (needed by --enable_batching); pass --no-batching" in (
        capsys.readouterr().err
    )
    assert main(["serve", "--export-dir", str(repository), "--dry-run", "--no-batching"]) == 0


def test_sigterm_is_passed_on_to_the_server(repository, fake_server, capsys):
    import signal
    import threading

    script, arguments = fake_server
    # A server that waits until it gets SIGTERM, notes it and exits as a terminated server would.
    script.write_text(
        '#!/bin/sh\ntrap \'kill "$child"; echo terminated > "$FAKE_ARGS"; exit 143\' TERM\nsleep 30 &\nchild=$!\nwait\n'
    )
    previous = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert main(["serve", "--export-dir", str(repository)]) == 143
    finally:
        timer.cancel()
    assert arguments.read_text().strip() == "terminated"
    assert signal.getsignal(signal.SIGTERM) == previous  # the forwarding handler is gone again
