"""``python -m ipex_resnet.cli``: the same as ``ipex-resnet``."""

import sys

from ipex_resnet.cli import main

sys.exit(main())
