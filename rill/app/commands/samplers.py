"""`rill samplers`: the sampler registry with each one's order, noise and cost, and what 'auto' picks."""

from __future__ import annotations

import argparse

HELP = "list the samplers with their order and NFE per step"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from ...samplers import INFO, SAMPLERS, resolve

    rows = [("name", "order", "stochastic", "NFE for 10 steps", "what")]
    for name in SAMPLERS:  # every registered sampler has an INFO entry (rill.samplers)
        i = INFO[name]
        rows.append((name, str(i.order), "yes" if i.stochastic else "no", str(i.nfe(10, {})), i.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r[:4], widths)) + "  " + r[4])
    name, opts, grid = resolve("auto", 16)
    print(f"\n'auto' (the default) fits a sampler and σ grid to the NFE budget; at 16 NFE: {name}", end="")
    print(f" {opts}" if opts else "", f"on the {grid!r} grid")
    return 0
