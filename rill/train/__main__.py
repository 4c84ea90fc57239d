"""`python -m rill.train` is `rill train`."""

import sys

from rill.train.cli import main

sys.exit(main())
