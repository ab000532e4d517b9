"""The command line: the parser and one module per larger subcommand.

`main` is the `mtmm` console script's entry point (`keras_mtmm.cli:main`, as installed by setup.py);
`python -m keras_mtmm.cli` runs it too.
"""

from keras_mtmm.cli.commands import main

__all__ = ["main"]
