"""A stand-in for the `tensorflow_model_server` binary: the test double behind the real command line.

    python tests/support/fake_model_server.py --port=8500 --rest_api_port=8501 --model_config_file=... \
        [--model_config_file_poll_wait_seconds=N] [--enable_batching --batching_parameters_file=F]
        [--monitoring_config_file=F]

It exists so the live-server test (test_serving_live.py) and `mtmm serve` run
end to end here, where the real binary cannot be installed: a wrapper script
named `tensorflow_model_server` on PATH runs this. Flags it does not know
are an error, as in the real binary; files named by flags must exist; the
models.config is re-read every poll interval, as the real server does.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tensorflow_model_server (test stand-in)")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--rest_api_port", type=int, default=0)
    parser.add_argument("--model_config_file", required=True)
    parser.add_argument("--model_config_file_poll_wait_seconds", type=int, default=0)
    parser.add_argument("--enable_batching", action="store_true")
    parser.add_argument("--batching_parameters_file", default=None)
    parser.add_argument("--monitoring_config_file", default=None)
    args = parser.parse_args(argv)
    for path in (args.model_config_file, args.batching_parameters_file, args.monitoring_config_file):
        if path is not None and not Path(path).is_file():
            print(f"stand-in server: {path} does not exist", file=sys.stderr)
            return 1

    from tests.support.tf_serving_double import TFServingDouble

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = TFServingDouble(
        args.model_config_file, rest=args.rest_api_port > 0, rest_port=args.rest_api_port, grpc_port=args.port
    )
    with server:
        print(f"stand-in server: gRPC {server.grpc_port}, REST {server.rest_port}", flush=True)
        seen = Path(args.model_config_file).stat().st_mtime_ns
        while not stop.wait(args.model_config_file_poll_wait_seconds or 3600):
            changed = Path(args.model_config_file).stat().st_mtime_ns
            if changed != seen:
                seen = changed
                try:
                    server.reload_config()
                except ValueError as error:  # the real server keeps serving the old config too
                    print(f"stand-in server: config refused: {error}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
