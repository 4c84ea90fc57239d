"""`python -m rill ...` is the `rill` command."""

import sys

from rill.cli import main

sys.exit(main())
