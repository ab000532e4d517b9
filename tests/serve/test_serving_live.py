"""A live TF Serving: `mtmm serve` starts `tensorflow_model_server` on an exported repository, and the
client's REST and gRPC answers equal in-process predictions, through a label switch between versions.

`test_real_tensorflow_model_server` runs wherever the binary is on PATH and is
skipped elsewhere (it cannot be installed on these machines). The same steps
also run against a stand-in binary (tests/support/fake_model_server.py: the test
double behind the real command line), so this code is exercised here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_mtmm.export.repository import set_label
from keras_mtmm.serve.client import ServingClient, ServingError
from keras_mtmm.training.launch import find_ports
from tests.conftest import REPO_ROOT
from tests.serve.test_serving_client import _text_rows, build_repository

BINARY = "tensorflow_model_server"


def check_live_server(root, raw, expected, path_env: str) -> None:
    grpc_port, rest_port = find_ports(2)
    command = [sys.executable, "-m", "keras_mtmm.cli.commands", "serve", "--export-dir", str(root)]
    command += ["--port", str(grpc_port), "--rest-port", str(rest_port), "--poll-seconds", "1"]
    env = {**os.environ, "PATH": path_env}
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        rows = _text_rows(raw)

        def client(transport="rest", **selection):
            return ServingClient(
                "127.0.0.1", rest_port, grpc_port, model="demo", transport=transport, timeout=10, **selection
            )

        _wait(lambda: sorted(e["version"] for e in client().status() if e["state"] == "AVAILABLE") == [1, 2], server)
        for transport in ("rest", "grpc"):
            for selection, version in (({"version": 1}, 1), ({"label": "stable"}, 1), ({"label": "canary"}, 2)):
                answer = client(transport, **selection).predict(rows)
                for task, value in expected[version].items():
                    np.testing.assert_allclose(answer[task], value, rtol=1e-5, atol=1e-5)
            labels = client(transport, label="stable").predict(rows, signature="predict_shape")["shape_label"]
            assert len(labels) == len(rows)

        set_label(root, "demo", 2, "stable")  # roll forward: the server picks models.config up on its next poll

        def stable_is_version_2():
            price = client(label="stable").predict(rows)["price"]
            return np.allclose(price, expected[2]["price"], rtol=1e-5, atol=1e-5)

        _wait(stable_is_version_2, server)
        answer = client("grpc", label="stable").predict(rows)
        np.testing.assert_allclose(answer["price"], expected[2]["price"], rtol=1e-5, atol=1e-5)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode in (0, -15, 143), server.stdout.read().decode()[-2000:]


def _wait(condition, server, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited ({server.returncode}): {server.stdout.read().decode()[-3000:]}")
        try:
            if condition():
                return
        except ServingError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the server did not get there within {timeout} s")


@pytest.mark.skipif(shutil.which(BINARY) is None, reason=f"{BINARY} is not on PATH (no wheel or Debian package)")
def test_real_tensorflow_model_server(tiny_run, tmp_path):
    root, raw, expected = build_repository(tiny_run, tmp_path / "models")
    check_live_server(root, raw, expected, os.environ["PATH"])


def test_the_same_steps_against_the_stand_in_binary(tiny_run, tmp_path):
    root, raw, expected = build_repository(tiny_run, tmp_path / "models")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / BINARY
    server = REPO_ROOT / "tests" / "support" / "fake_model_server.py"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{server}" "$@"\n')
    wrapper.chmod(0o755)
    check_live_server(root, raw, expected, f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
