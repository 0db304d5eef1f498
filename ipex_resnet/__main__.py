import sys

from ipex_resnet.cli import main

sys.exit(main())
