import sys

from chexvision.cli import main

sys.exit(main())
