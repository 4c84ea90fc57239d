"""The `rill` command: a table of subcommands, one module each in rill/app/commands/.

    rill demo                               prompt grids and a denoising strip from the bundled models
    rill generate "a red circle" -n 4       one PNG per sample (named by seed) + a grid, in --out
    rill train --data digits --preset tiny  train (forwards to rill.train.cli)
    rill info CKPT | rill samplers | rill eval CKPT

A new command is one file in commands/ and one entry in COMMANDS. `import rill.app.cli` is light (argparse
only); each command imports what it needs when it runs. Errors a user can fix print one line naming the
problem and the next step (RILL_DEBUG=1: traceback). Exit codes, the same for every command: 0 done, 2 a
problem the user can fix (a flag, a file, the --out folder), 1 a failure of the run itself (a disk error, a
non-finite loss), 130 Ctrl-C (128 + the signal)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .common import UserError, choose_bundled

__all__ = ["COMMANDS", "main", "build_parser", "choose_bundled", "UserError"]

# name -> module under rill.app.commands (in the order `rill --help` lists them)
COMMANDS = {
    "generate": "generate",
    "demo": "demo",
    "train": "train",
    "finetune": "finetune",
    "info": "info",
    "samplers": "samplers",
    "tune-sampler": "tune_sampler",
    "eval": "eval",
    "edit": "edit",
    "explain": "explain",
    "serve": "serve",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, and where to look, instead of usage + error
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _module(name: str):
    return importlib.import_module(f"rill.app.commands.{COMMANDS[name]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `rill` parser. `only`: give only that command its arguments ("" = none), so a run imports just the
    command it runs (a command's add_arguments may import heavy modules, e.g. explain's view list)."""
    from .. import __version__

    p = _Parser(
        prog="rill",
        description="Diffusion models in noise-level space: text-to-image on a laptop.",
        epilog="Start with 'rill demo'. Each command has --help.",
    )
    p.add_argument("--version", action="version", version=f"rill {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        mod = _module(name)
        text = mod.HELP
        forward = getattr(mod, "FORWARD", False)
        parser = sub.add_parser(
            name, help=text, description=text[0].upper() + text[1:] + ".", add_help=not forward
        )
        parser.set_defaults(func=mod.run)
        if forward:
            parser.add_argument(
                "forward", nargs=argparse.REMAINDER, help="options of the command's own parser"
            )
        elif only is None or only == name:
            mod.add_arguments(parser)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in COMMANDS and getattr(_module(argv[0]), "FORWARD", False):
        # the rest belongs to the command's own parser (rill.train.cli, rill.eval.cli)
        args = argparse.Namespace(command=argv[0], func=_module(argv[0]).run, forward=argv[1:])
    else:
        parser = build_parser(only=argv[0] if argv[:1] and argv[0] in COMMANDS else "")
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
    try:
        return args.func(args)
    except (UserError, FileNotFoundError, ValueError) as e:  # rill's errors name the bad value and the fix
        if os.environ.get("RILL_DEBUG"):
            raise
        print(f"rill {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rill {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `rill info CKPT | head`: stop quietly (Python docs, "Note on SIGPIPE")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # the disk under the run (full, gone, read-only): one line, not a traceback
        if os.environ.get("RILL_DEBUG"):
            raise
        print(f"rill {args.command}: error: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
