"""`mtmm launch`: one TF_CONFIG per local worker, prefixed output, and a cluster that fails, times out or stops as one.

The workers are tiny Python scripts (no TensorFlow), so the whole file runs in seconds.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from keras_mtmm.cli.commands import main
from keras_mtmm.errors import UserError
from keras_mtmm.training.launch import TIMEOUT_STATUS, cluster_spec, launch
from tests.conftest import REPO_ROOT

# Each worker prints its TF_CONFIG, then serves on its own port as TensorFlow's gRPC server would.
REPORT_WORKER = """
import json, os, socket, sys
config = json.loads(os.environ["TF_CONFIG"])
index = config["task"]["index"]
print("TF_CONFIG " + json.dumps(config))
port = int(config["cluster"]["worker"][index].rsplit(":", 1)[1])
server = socket.socket()
server.bind(("", port))
server.listen()
for step in range(5):
    print(f"step {step}")
print(f"a warning from {index}", file=sys.stderr)
"""

# Worker 0 sleeps; worker 1 waits until worker 0 has written its pid, then exits with status 3.
FAILING_WORKER = """
import json, os, pathlib, sys, time
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
pid_file = pathlib.Path(sys.argv[1])
if index == 0:
    pid_file.write_text(str(os.getpid()))
    time.sleep(60)
deadline = time.monotonic() + 10
while not pid_file.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
sys.exit(3)
"""


def write_script(tmp_path, source: str, name: str = "worker.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def lines_of(text: str, index: int) -> list[str]:
    prefix = f"[worker {index}] "
    return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]


def run_launch(command, workers, **kwargs):
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.monotonic()
    status = launch(command, workers, stdout=stdout, stderr=stderr, **kwargs)
    return status, stdout.getvalue(), stderr.getvalue(), time.monotonic() - started


def test_cluster_spec_gives_every_worker_the_same_cluster_and_its_own_index():
    configs = cluster_spec(3, [5000, 5001, 5007])
    assert [config["task"] for config in configs] == [{"type": "worker", "index": i} for i in range(3)]
    addresses = ["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5007"]
    assert all(config["cluster"] == {"worker": addresses} for config in configs)
    with pytest.raises(ValueError, match="expected 2 ports, got 1"):
        cluster_spec(2, [5000])


def test_every_worker_gets_its_tf_config_and_its_output_is_prefixed(tmp_path):
    script = write_script(tmp_path, REPORT_WORKER)
    env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": ["elsewhere:1"]}, "task": {"index": 0}})}
    status, out, err, _ = run_launch([sys.executable, script], 3, env=env)
    assert status == 0, err
    assert "note: TF_CONFIG from the environment is replaced" in err
    configs = []
    for index in range(3):
        lines = lines_of(out, index)
        assert lines[0].startswith("TF_CONFIG ")
        assert lines[1:] == [f"step {step}" for step in range(5)]  # in order within the worker
        assert lines_of(err, index) == [f"a warning from {index}"]
        configs.append(json.loads(lines[0].removeprefix("TF_CONFIG ")))
    assert [config["task"] for config in configs] == [{"type": "worker", "index": i} for i in range(3)]
    addresses = configs[0]["cluster"]["worker"]
    assert all(config["cluster"] == {"worker": addresses} for config in configs)
    hosts, ports = zip(*(address.rsplit(":", 1) for address in addresses))
    assert set(hosts) == {"127.0.0.1"}  # loopback, not a name that may resolve elsewhere
    assert len(set(ports)) == 3


def test_a_failing_worker_stops_the_others_and_sets_the_status(tmp_path):
    pid_file = tmp_path / "worker0.pid"
    script = write_script(tmp_path, FAILING_WORKER)
    status, _, err, seconds = run_launch([sys.executable, script, str(pid_file)], 2)
    assert status == 3
    assert seconds < 20
    assert err.splitlines()[-1] == "error: worker 1 exited with status 3; stopped the other workers"
    with pytest.raises(ProcessLookupError):  # the sleeping worker 0 is gone
        os.kill(int(pid_file.read_text()), 0)


def test_a_worker_killed_by_a_signal_is_reported_with_it(tmp_path):
    script = write_script(
        tmp_path,
        """
        import json, os, signal, time
        if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)
        """,
    )
    status, _, err, seconds = run_launch([sys.executable, script], 2)
    assert status == 128 + signal.SIGKILL
    assert seconds < 20
    assert err.splitlines()[-1] == (
        "error: worker 1 exited with status 137 (killed by signal SIGKILL); stopped the other workers"
    )


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    script = write_script(
        tmp_path,
        """
        import json, os, signal, sys, time
        if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 1:
            time.sleep(0.5)
            sys.exit(1)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
        """,
    )
    status, _, err, seconds = run_launch([sys.executable, script], 2, grace=0.5)
    assert status == 1
    assert seconds < 20
    assert "error: worker 1 exited with status 1" in err


def test_timeout_stops_a_hanging_run_with_124(tmp_path):
    script = write_script(tmp_path, "import time\ntime.sleep(60)\n")
    status, _, err, seconds = run_launch([sys.executable, script], 2, timeout=0.5)
    assert status == TIMEOUT_STATUS == 124
    assert seconds < 20
    assert "error: the workers ran longer than the 0.5 s timeout; stopped them" in err


def test_a_busy_port_base_is_named(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} \\(for worker 0\\) is in use"):
            launch([sys.executable, "-c", "pass"], 2, port_base=port)


def test_signals_to_the_launcher_reach_every_worker(tmp_path):
    script = write_script(
        tmp_path,
        """
        import signal, sys, time
        def stop(signum, frame):
            print("got", signal.Signals(signum).name)
            sys.exit(0)
        signal.signal(signal.SIGINT, stop)
        print("ready")
        time.sleep(60)
        """,
    )
    command = [sys.executable, "-m", "keras_mtmm.cli.commands", "launch", "--workers", "2", "--timeout", "30"]
    command += ["--", sys.executable, script]
    launcher = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = set()
    while len(ready) < 2:  # the launcher's --timeout bounds this loop
        line = launcher.stdout.readline()
        assert line, launcher.stderr.read()
        if line.endswith("] ready\n"):
            ready.add(line)
    launcher.send_signal(signal.SIGINT)
    out, err = launcher.communicate(timeout=20)
    assert launcher.returncode == 128 + signal.SIGINT, err
    assert sorted(line for line in out.splitlines() if "got" in line) == [
        "[worker 0] got SIGINT",
        "[worker 1] got SIGINT",
    ]
    assert "launcher got SIGINT" in err


def test_cli_runs_the_workers(tmp_path, capsys):
    script = write_script(tmp_path, "import os, json\nprint(json.loads(os.environ['TF_CONFIG'])['task']['index'])\n")
    assert main(["launch", "--workers", "2", "--", sys.executable, script]) == 0
    out = capsys.readouterr().out
    assert sorted(out.splitlines()) == ["[worker 0] 0", "[worker 1] 1"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0", "--", "x"], "error: --workers: expected 1 to 64 workers, got 0"),
        (["--workers", "65", "--", "x"], "error: --workers: expected 1 to 64 workers, got 65"),
        (["--workers", "2"], "error: COMMAND: no command to launch; give it after --"),
        (["--workers", "2", "--"], "error: COMMAND: no command to launch; give it after --"),
        (["--workers", "2", "--timeout", "0", "--", "x"], "error: --timeout: expected a positive number"),
        (["--workers", "1", "--", "/no/such/program"], "error: COMMAND: '/no/such/program' cannot be started"),
    ],
)
def test_cli_user_mistakes_exit_with_2(argv, message, capsys):
    assert main(["launch", *argv]) == 2
    assert message in capsys.readouterr().err
