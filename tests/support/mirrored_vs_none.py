"""Train the tiny demo with training.distribute none and mirrored (2 logical CPUs); print both histories.

    python tests/support/mirrored_vs_none.py OUTPUT_DIR [KEY=VALUE ...]

Logical devices must be set before TensorFlow initialises, hence a script of its own (test_distributed.py).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: conftest

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from conftest import DEMO_CONFIG, TINY_OVERRIDES  # noqa: E402

from keras_mtmm.config.loading import load_config  # noqa: E402
from keras_mtmm.training.run import train  # noqa: E402

histories = {}
for kind in ("none", "mirrored"):
    # cache off in both: `auto` caches with one device and streams with several (different example orders)
    overrides = [
        *TINY_OVERRIDES,
        "training.epochs=2",
        "sharing.dropout=0.0",
        "training.cache=false",
        f"training.distribute={kind}",
    ]
    config = load_config(DEMO_CONFIG, overrides + sys.argv[2:])
    result = train(config, output_dir=os.path.join(sys.argv[1], kind), export=False, verbose=0)
    histories[kind] = {"history": result.history, "weights": [w.tolist() for w in result.model.get_weights()]}
print("RESULT " + json.dumps(histories))
