"""`python -m keras_mtmm.cli ...`: the `mtmm` command."""

import sys

from keras_mtmm.cli.commands import main

sys.exit(main())
