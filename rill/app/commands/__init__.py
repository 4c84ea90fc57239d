"""One file per `rill` command: HELP (one line), add_arguments(parser) and run(args) -> exit code, or
FORWARD = True for a command whose own parser takes the rest of the command line. rill.app.cli.COMMANDS lists
them in the order `rill --help` shows."""
