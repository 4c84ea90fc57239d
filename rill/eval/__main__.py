"""`python -m rill.eval` is `rill eval`."""

import sys

from rill.eval.cli import main

sys.exit(main())
