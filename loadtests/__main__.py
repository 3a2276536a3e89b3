"""``python -m loadtests run [options]``: see ``loadtests/run.py``."""

import sys

from loadtests.run import main

sys.exit(main())
