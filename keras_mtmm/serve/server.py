"""`mtmm serve`: run TensorFlow Serving on the model repository, or print the Docker command that does.

The command serves everything `models.config` names, with the repository's
`batching_parameters.txt` and `monitoring.config` (see `repository.py`),
and re-reads `models.config` every `poll_seconds`, so `mtmm label` and new
exports take effect without a restart.

`tensorflow_model_server` is a C++ binary with no pip wheel. Where it is on
PATH, `serve` runs it in the foreground; elsewhere it prints the equivalent
`docker run ... tensorflow/serving` command and exits with status 2. The
container mounts the repository at the same absolute path, so the absolute
`base_path` entries of `models.config` resolve inside it unchanged.

What listens where: the Docker command publishes the ports on `host`
(default `127.0.0.1`, this machine only; `--host 0.0.0.0` for every
interface, an explicit choice). `tensorflow_model_server` itself has no
flag for its listening address and binds every interface, so a local run
says so on stderr: firewall the ports, or serve through Docker.
A SavedModel is a program: serve only exports you trust.

Example:
    >>> serve("saved_models", dry_run=True)  # doctest: +SKIP
    tensorflow_model_server --port=8500 --rest_api_port=8501 --model_config_file=/abs/saved_models/models.config ...
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from keras_mtmm.errors import UserError
from keras_mtmm.export.repository import BATCHING_FILE, CONFIG_FILE, MONITORING_FILE, read_models_config

SERVER_BINARY = "tensorflow_model_server"
DOCKER_IMAGE = "tensorflow/serving"
# The ports tensorflow_model_server listens on inside the tensorflow/serving container.
CONTAINER_GRPC_PORT = 8500
CONTAINER_REST_PORT = 8501
DEFAULT_HOST = "127.0.0.1"  # loopback: this machine only


def serve(
    export_dir: str | Path = "saved_models",
    port: int = 8500,
    rest_port: int = 8501,
    batching: bool = True,
    poll_seconds: int = 30,
    dry_run: bool = False,
    docker_image: str = DOCKER_IMAGE,
    host: str = DEFAULT_HOST,
) -> int:
    """Run (or, with `dry_run`, print) TF Serving for a model repository; return the exit status.

    Args:
        export_dir: the model repository root (holding `models.config`).
        port: the gRPC port.
        rest_port: the REST port.
        batching: serve with `--enable_batching` and the repository's batching parameters.
        poll_seconds: how often the server re-reads `models.config` (0: never).
        dry_run: print the command and start nothing.
        docker_image: the image of the printed `docker run` command (no local binary).
        host: the address the Docker command publishes the ports on.

    Returns:
        The server's exit status (0 for a dry run).

    Raises:
        UserError: the repository has nothing to serve, a flag is out of range,
            or (not a dry run) the server binary is not installed here.
    """
    export_dir = Path(export_dir).resolve()
    _check_flags(port, rest_port, poll_seconds)
    _check_host(host)
    _check_repository(export_dir, batching)
    binary = shutil.which(SERVER_BINARY)
    if binary is not None:
        command = [binary, *server_flags(export_dir, port, rest_port, batching, poll_seconds)]
        print(
            f"warning: {SERVER_BINARY} has no listening-address flag and binds every interface "
            f"(ports {port} and {rest_port}); firewall them, or serve through Docker (published on {host})",
            file=sys.stderr,
        )
        print(shlex.join(command), flush=True)
        return 0 if dry_run else run_in_foreground(command)
    for warning in mount_warnings(export_dir):
        print(f"warning: {warning}", file=sys.stderr)
    command = docker_command(export_dir, port, rest_port, batching, poll_seconds, docker_image, host)
    print(shlex.join(command), flush=True)
    if dry_run:
        return 0
    raise UserError(
        SERVER_BINARY,
        "is not installed here (not on PATH), so no server was started",
        "run the docker command above, or install TF Serving (Google's apt repository) and run mtmm serve again",
    )


def server_flags(
    export_dir: Path, grpc_port: int, rest_port: int, batching: bool = True, poll_seconds: int = 30
) -> list[str]:
    """The `tensorflow_model_server` flags that serve the repository at `export_dir` (an absolute path)."""
    flags = [
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_config_file={export_dir / CONFIG_FILE}",
        f"--model_config_file_poll_wait_seconds={poll_seconds}",
    ]
    if batching:
        flags += ["--enable_batching", f"--batching_parameters_file={export_dir / BATCHING_FILE}"]
    if (export_dir / MONITORING_FILE).is_file():
        flags.append(f"--monitoring_config_file={export_dir / MONITORING_FILE}")
    return flags


def docker_command(
    export_dir: Path,
    port: int,
    rest_port: int,
    batching: bool,
    poll_seconds: int,
    image: str = DOCKER_IMAGE,
    host: str = DEFAULT_HOST,
) -> list[str]:
    """`docker run` of the TF Serving image with the repository mounted at the same absolute path,
    its ports published on `host` only."""
    root = str(export_dir)
    return [
        "docker",
        "run",
        "--rm",
        "-p",
        f"{_publish_host(host)}:{port}:{CONTAINER_GRPC_PORT}",
        "-p",
        f"{_publish_host(host)}:{rest_port}:{CONTAINER_REST_PORT}",
        "-v",
        f"{root}:{root}",
        image,
        *server_flags(export_dir, CONTAINER_GRPC_PORT, CONTAINER_REST_PORT, batching, poll_seconds),
    ]


def mount_warnings(export_dir: Path) -> list[str]:
    """The models.config entries whose base_path a container mounting only `export_dir` would not see."""
    warnings = []
    for entry in read_models_config(export_dir).model_config_list.config:
        base_path = Path(entry.base_path)
        if not base_path.is_absolute() or not base_path.resolve().is_relative_to(export_dir):
            warnings.append(
                f"{export_dir / CONFIG_FILE}: model '{entry.name}' has base_path '{entry.base_path}', "
                f"outside {export_dir}, which is all the container mounts; "
                "add a -v mount for it or export the model into this repository"
            )
    return warnings


def run_in_foreground(command: list[str]) -> int:
    """Run the server until it exits, passing SIGINT/SIGTERM on to it; return its exit status."""
    try:
        process = subprocess.Popen(command)
    except OSError as error:
        raise UserError(command[0], f"cannot be started ({error.strerror})", "check the installation") from None

    def forward(signum, frame):
        if process.poll() is None:
            process.send_signal(signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = {signum: signal.signal(signum, forward) for signum in handled} if in_main_thread else {}
    try:
        status = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - status if status < 0 else status  # killed by signal N: 128 + N, as a shell reports it


def _check_flags(port: int, rest_port: int, poll_seconds: int) -> None:
    for flag, value in (("--port", port), ("--rest-port", rest_port)):
        if not 1 <= value <= 65535:
            raise UserError(flag, f"expected a port number (1-65535), got {value}", f"e.g. {flag} 8500")
    if port == rest_port:
        raise UserError("--rest-port", f"is the same as --port ({port})", "give gRPC and REST different ports")
    if poll_seconds < 0:
        raise UserError("--poll-seconds", f"expected 0 or more, got {poll_seconds}", "0 never re-reads models.config")


def _check_host(host: str) -> None:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UserError(
            "--host",
            f"expected an IP address, got {host!r}",
            "e.g. 127.0.0.1 (this machine) or 0.0.0.0 (every interface)",
        ) from None


def _publish_host(host: str) -> str:
    """Docker's -p takes an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def _check_repository(export_dir: Path, batching: bool) -> None:
    how = "export a model first (python train.py, or mtmm export), or pass --export-dir"
    if not (export_dir / CONFIG_FILE).is_file():
        raise UserError("--export-dir", f"'{export_dir}' has no {CONFIG_FILE} (nothing exported there yet)", how)
    if not read_models_config(export_dir).model_config_list.config:
        raise UserError(str(export_dir / CONFIG_FILE), "names no model", how)
    if batching and not (export_dir / BATCHING_FILE).is_file():
        raise UserError(
            str(export_dir / BATCHING_FILE),
            "is missing (needed by --enable_batching)",
            "pass --no-batching, or export again (the export writes a starting point)",
        )
