"""Train an experiment: `python train.py [--config PATH] [--set KEY=VALUE ...]`.

With no flags it trains the built-in demo (configs/demo.yaml) and exports
saved_models/demo/<next version>/. See `python train.py --help`.
"""

import sys

from keras_mtmm.cli.commands import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
