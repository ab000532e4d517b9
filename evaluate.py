"""Evaluate a model: `python evaluate.py --model saved_models/demo/1 [--split test] [--output m.json]`.

See `python evaluate.py --help`.
"""

import sys

from keras_mtmm.cli.commands import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
