"""``python -m retinaface_trt``: the same command-line tool as the ``retinaface-trt`` console script."""

import sys

from runtime.cli.main import main

sys.exit(main())
