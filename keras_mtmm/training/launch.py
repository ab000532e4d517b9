"""`mtmm launch`: start N local copies of a command as one tf.distribute cluster, each with its own TF_CONFIG.

For trying `training.distribute: multi_worker` on one machine (and for
tests). Worker i gets

    TF_CONFIG={"cluster": {"worker": ["127.0.0.1:P0", "127.0.0.1:P1", ...]},
               "task": {"type": "worker", "index": i}}

on free loopback ports; worker 0 is the chief (TensorFlow's convention when
the cluster has no "chief" task). Each worker's stdout and stderr lines reach
the launcher's stdout and stderr prefixed with `[worker i] `. When a worker
fails, the others are stopped (SIGTERM, then SIGKILL after a grace period)
and the launcher returns the failed worker's status; SIGINT, SIGTERM and
SIGHUP sent to the launcher are passed on to every worker.

Each worker runs in its own process group, so that stopping it also stops
what it started (e.g. `sh -c "python train.py"`), and so that Ctrl-C in a
terminal reaches the workers once, through the launcher.

Example:
    >>> launch(["python", "train.py", "--set", "training.distribute=multi_worker"], workers=2)  # doctest: +SKIP
    0
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

from keras_mtmm.errors import UserError

HOST = "127.0.0.1"  # the workers reach each other over loopback
MAX_WORKERS = 64
# Seconds a worker has to exit after SIGTERM before it is killed.
GRACE_SECONDS = 10.0
# The exit status when --timeout runs out (as `timeout(1)` reports it).
TIMEOUT_STATUS = 124
_POLL_SECONDS = 0.05
# Seconds to wait for a worker's output to drain after it exited.
_DRAIN_SECONDS = 5.0
_FORWARDED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_EXAMPLE = "e.g. mtmm launch --workers 2 -- python train.py --set training.distribute=multi_worker"


def cluster_spec(workers: int, ports: Sequence[int], host: str = HOST) -> list[dict]:
    """The TF_CONFIG of each worker: one cluster of `host:port` workers, and the worker's own index.

    Args:
        workers: the number of workers.
        ports: one port per worker.
        host: the host every worker listens on.

    Example:
        >>> cluster_spec(2, [5000, 5001])[1]
        {'cluster': {'worker': ['127.0.0.1:5000', '127.0.0.1:5001']}, 'task': {'type': 'worker', 'index': 1}}
    """
    if len(ports) != workers:
        raise ValueError(f"cluster_spec: expected {workers} ports, got {len(ports)}: {list(ports)}")
    addresses = [f"{host}:{port}" for port in ports]
    return [{"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": i}} for i in range(workers)]


def find_ports(workers: int, port_base: int | None = None) -> list[int]:
    """`workers` free ports: ones the system picks, or `port_base`, `port_base + 1`, ... checked to be free.

    A port is free when nothing listens on it; another program may still take
    it before the worker does (then that worker fails to start its server).
    """
    if port_base is None:
        probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(workers)]
        try:
            for probe in probes:  # all held open at once, so the ports differ
                probe.bind(("", 0))
            return [probe.getsockname()[1] for probe in probes]
        finally:
            for probe in probes:
                probe.close()
    ports = list(range(port_base, port_base + workers))
    for index, port in enumerate(ports):
        if not _is_free(port):
            raise UserError(
                "--port-base",
                f"port {port} (for worker {index}) is in use",
                "choose another --port-base, or leave it out to use free ports",
            )
    return ports


def _is_free(port: int) -> bool:
    # SO_REUSEADDR, as TensorFlow's gRPC server sets it: a port in TIME_WAIT after an earlier run counts as free.
    for address in ("", "127.0.0.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


def launch(
    command: list[str],
    workers: int,
    port_base: int | None = None,
    timeout: float | None = None,
    env: dict | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    *,
    grace: float = GRACE_SECONDS,
) -> int:
    """Run `workers` copies of `command` as one local cluster until all exit; return the exit status.

    Args:
        command: the program and its arguments, run by every worker.
        workers: the number of workers, 1 to `MAX_WORKERS`.
        port_base: use ports `port_base` ... `port_base + workers - 1` (default: free ones the system picks).
        timeout: seconds after which all workers are stopped and `TIMEOUT_STATUS` returned (default: none).
        env: the workers' environment, before TF_CONFIG is set (default: this process's).
        stdout, stderr: text streams for the workers' prefixed lines and the launcher's messages
            (default: sys.stdout, sys.stderr).
        grace: seconds a worker has to exit after SIGTERM before it is killed.

    Returns:
        0 when every worker exits with 0; else the first failed worker's status (128 + N when killed by
        signal N), `TIMEOUT_STATUS` after a timeout, or 128 + N after the launcher got signal N.

    Example:
        >>> launch([sys.executable, "-c", "import os; print(os.environ['TF_CONFIG'])"], workers=2)  # doctest: +SKIP
    """
    _check_arguments(command, workers, port_base, timeout)
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    base_env = dict(os.environ if env is None else env)
    if "TF_CONFIG" in base_env:
        print("note: TF_CONFIG from the environment is replaced by each worker's own", file=stderr, flush=True)
    base_env.setdefault("PYTHONUNBUFFERED", "1")  # Python workers: lines arrive as they are printed
    configs = cluster_spec(workers, find_ports(workers, port_base))
    addresses = ", ".join(configs[0]["cluster"]["worker"])
    print(
        f"launching {workers} worker(s) on {addresses} (worker 0 is the chief): {shlex.join(command)}",
        file=stderr,
        flush=True,
    )
    ports = ", ".join(address.rsplit(":", 1)[1] for address in configs[0]["cluster"]["worker"])
    print(
        f"warning: TensorFlow's gRPC server listens on every interface (ports {ports}), whatever the "
        "cluster addresses say, and runs graphs for anyone who connects: launch on a trusted network or "
        "firewall the ports",
        file=stderr,
        flush=True,
    )
    group = _Workers(stdout, stderr, grace)
    try:
        for config in configs:
            group.start(command, {**base_env, "TF_CONFIG": json.dumps(config)})
        return _supervise(group, timeout)
    finally:
        group.kill()


class _Workers:
    """The worker processes, their output forwarding threads, and the signals sent to them."""

    def __init__(self, stdout: TextIO, stderr: TextIO, grace: float):
        self.stdout = stdout
        self.stderr = stderr
        self.grace = grace
        self.processes: list[subprocess.Popen] = []
        self.readers: list[threading.Thread] = []
        self.lock = threading.Lock()  # one line at a time on the launcher's streams

    def start(self, command: list[str], env: dict) -> None:
        index = len(self.processes)
        try:
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                start_new_session=hasattr(os, "killpg"),
            )
        except OSError as error:
            raise UserError("COMMAND", f"'{command[0]}' cannot be started ({error.strerror})", _EXAMPLE) from None
        self.processes.append(process)
        for pipe, target in ((process.stdout, self.stdout), (process.stderr, self.stderr)):
            reader = threading.Thread(target=self._forward, args=(pipe, f"[worker {index}] ", target), daemon=True)
            reader.start()
            self.readers.append(reader)

    def _forward(self, pipe, prefix: str, target: TextIO) -> None:
        with pipe:
            for line in pipe:
                try:
                    with self.lock:
                        target.write(prefix + (line if line.endswith("\n") else line + "\n"))
                        target.flush()
                except (OSError, ValueError):  # the launcher's stream is closed: keep draining the pipe
                    pass

    def say(self, message: str) -> None:
        with self.lock:
            print(message, file=self.stderr, flush=True)

    def running(self) -> list[subprocess.Popen]:
        return [process for process in self.processes if process.poll() is None]

    def signal(self, signum: int) -> None:
        for process in self.running():
            try:
                if hasattr(os, "killpg"):
                    os.killpg(process.pid, signum)  # the worker's whole process group
                else:
                    process.send_signal(signum)
            except ProcessLookupError:  # it exited meanwhile
                pass

    def stop(self) -> None:
        """SIGTERM to every running worker; SIGKILL to those still running after the grace period."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self.running() and time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
        self.kill()

    def kill(self) -> None:
        self.signal(getattr(signal, "SIGKILL", signal.SIGTERM))
        for process in self.processes:
            process.wait()

    def drain(self) -> None:
        for reader in self.readers:
            reader.join(_DRAIN_SECONDS)


def _supervise(group: _Workers, timeout: float | None) -> int:
    """Wait for the workers, stopping all of them on the first failure, a timeout or a signal."""
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        # The first signal is passed on; a second one kills the workers.
        group.signal(signum if len(received) == 1 else getattr(signal, "SIGKILL", signal.SIGTERM))

    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED_SIGNALS} if in_main_thread else {}
    try:
        return _wait(group, timeout, received)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait(group: _Workers, timeout: float | None, received: list[int]) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    noted = False
    while True:
        if received and not noted:
            noted = True
            group.say(f"launcher got {_signal_name(received[0])}: passed it on to the workers; waiting for them")
        statuses = [process.poll() for process in group.processes]
        failed = [(index, status) for index, status in enumerate(statuses) if status not in (None, 0)]
        if failed and not received:
            index, status = failed[0]
            group.stop()
            group.drain()
            others = "; stopped the other workers" if len(statuses) > 1 else ""
            group.say(f"error: worker {index} exited with status {_describe(status)}{others}")
            return _exit_status(status)
        if all(status is not None for status in statuses):
            group.drain()
            if received:
                group.say(f"interrupted: all workers stopped after {_signal_name(received[0])}")
                return 128 + received[0]
            return 0
        if deadline is not None and time.monotonic() > deadline:
            group.stop()
            group.drain()
            group.say(f"error: the workers ran longer than the {timeout:g} s timeout; stopped them")
            return TIMEOUT_STATUS
        time.sleep(_POLL_SECONDS)


def _check_arguments(command: list[str], workers: int, port_base: int | None, timeout: float | None) -> None:
    if not command:
        raise UserError("COMMAND", "no command to launch", f"give it after --, {_EXAMPLE}")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise UserError("--workers", f"expected 1 to {MAX_WORKERS} workers, got {workers!r}", "e.g. --workers 2")
    if port_base is not None and not 1024 <= port_base <= 65536 - workers:
        raise UserError(
            "--port-base",
            f"expected a port from 1024 to {65536 - workers} for {workers} worker(s), got {port_base}",
            "e.g. --port-base 20000, or leave it out to use free ports",
        )
    if timeout is not None and not timeout > 0:
        raise UserError("--timeout", f"expected a positive number of seconds, got {timeout}", "e.g. --timeout 600")


def _exit_status(status: int) -> int:
    """A worker's status as a shell reports it: 128 + N when killed by signal N; never 0 for a failure."""
    return 128 - status if status < 0 else max(status, 1)


def _describe(status: int) -> str:
    if status < 0:
        return f"{128 - status} (killed by signal {_signal_name(-status)})"
    return str(status)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
