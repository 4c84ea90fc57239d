"""rill.app: the `rill` command (cli.py) and `rill demo` (demo.py). Nothing imports this package."""
