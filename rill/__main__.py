"""`python -m rill ...` is the `rill` command."""

import sys

from rill.app.cli import main

sys.exit(main())
