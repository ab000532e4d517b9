"""How keras_mtmm starts TensorFlow: with its C++ start-up notes muted.

Imported first by `keras_mtmm/__init__`, before any module that imports TensorFlow.
"""

from __future__ import annotations

import os
import sys

# The keras_mtmm commands: TF 2.21 logs harmless C++ errors on CPU machines (cuInit, a tf.data
# attribute under op determinism) and reads its log level once, when TensorFlow starts.
COMMANDS = {"mtmm", "train.py", "evaluate.py"}


def quiet_tensorflow_start() -> None:
    """Import TensorFlow and find its devices with the C++ side's stderr muted.

    TF 2.21 writes its start-up notes (oneDNN, CUDA stubs, CPU features,
    cuInit on a machine without a GPU) straight to file descriptor 2 before
    its log level applies, so every `error:` line would follow six lines of
    noise. Python exceptions are unaffected (they print after the descriptor
    is restored); `KERAS_MTMM_TF_LOGS=1` keeps the notes. Run as one of the
    keras_mtmm commands, TensorFlow's C++ log level defaults to 3 (fatal only);
    a library user's `TF_CPP_MIN_LOG_LEVEL` is left as it is.
    """
    if os.environ.get("KERAS_MTMM_TF_LOGS") == "1" or "tensorflow" in sys.modules:
        return
    if os.path.basename(sys.argv[0] if sys.argv else "") in COMMANDS:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
