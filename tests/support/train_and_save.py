"""Train the tiny demo (a test helper) and save this process's final weights and history.

    python tests/support/train_and_save.py OUT DISTRIBUTE [KEY=VALUE ...]

Writes OUT/weights_<DISTRIBUTE>_<worker index>.npz and OUT/history_<...>.json; run under
`mtmm launch --workers N` for multi_worker (test_distributed.py).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: conftest

import numpy as np  # noqa: E402
from conftest import DEMO_CONFIG, TINY_OVERRIDES  # noqa: E402

from keras_mtmm.config.loading import load_config
from keras_mtmm.training.run import train  # noqa: E402

out, kind = sys.argv[1], sys.argv[2]
# cache off in every run: `auto` caches with one device and streams with several, and the two give the
# examples in different orders; the comparison is of the distribution, on one input order.
overrides = [
    *TINY_OVERRIDES,
    "training.epochs=2",
    "sharing.dropout=0.0",
    "training.cache=false",
    f"training.distribute={kind}",
]
config = load_config(DEMO_CONFIG, [*overrides, *sys.argv[3:]])
result = train(config, output_dir=os.path.join(out, f"run_{kind}"), export=False, verbose=0)
index = json.loads(os.environ.get("TF_CONFIG", '{"task": {"index": 0}}'))["task"]["index"]
np.savez(os.path.join(out, f"weights_{kind}_{index}.npz"), *result.model.get_weights())
with open(os.path.join(out, f"history_{kind}_{index}.json"), "w") as handle:
    json.dump(result.history, handle)
