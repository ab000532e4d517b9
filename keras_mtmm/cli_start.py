"""How the command line starts TensorFlow: with its C++ start-up notes muted."""

from __future__ import annotations

import os
import sys


def quiet_tensorflow_start() -> None:
    """Import TensorFlow and find its devices with the C++ side's stderr muted.

    TF 2.21 writes its start-up notes (oneDNN, CUDA stubs, CPU features,
    cuInit on a machine without a GPU) straight to file descriptor 2 before
    its log level applies, so every `error:` line would follow six lines of
    noise. Python exceptions are unaffected (they print after the descriptor
    is restored); `KERAS_MTMM_TF_LOGS=1` keeps the notes.
    """
    if os.environ.get("KERAS_MTMM_TF_LOGS") == "1" or "tensorflow" in sys.modules:
        return
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
