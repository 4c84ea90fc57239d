"""--init-from: start a new run from the backbone weights of a rill model file."""

from __future__ import annotations

from torch import nn

from ..model.files import load_model

__all__ = ["ADD_ON_MODULES", "warm_start"]

# Modules whose output starts at zero (layers.PixelRefine: conv_out zero-initialised), so a net that gains one
# computes what the source file computed: a warm start may leave them at their fresh init.
ADD_ON_MODULES = ("refine.",)


def warm_start(net: nn.Module, path: str) -> list[str]:
    """Copy the backbone weights of the rill model file `path` into `net`.

    Every tensor of the source must match this net's; the net may have more only inside ADD_ON_MODULES
    (kept at their fresh, output-neutral init). Returns the names of the tensors left fresh."""
    mine, theirs = net.state_dict(), load_model(path).net.state_dict()
    fresh = sorted(k for k in mine.keys() - theirs.keys() if k.startswith(ADD_ON_MODULES))
    bad = sorted((mine.keys() ^ theirs.keys()) - set(fresh)
                 | {k for k in mine.keys() & theirs.keys() if mine[k].shape != theirs[k].shape})  # fmt: skip
    if bad:
        raise ValueError(
            f"--init-from {path}: its backbone differs from this run's ({len(bad)} tensors, e.g. {bad[:3]}); "
            "use the preset and --set overrides the file was trained with (see `rill info FILE`)"
        )
    net.load_state_dict(theirs, strict=not fresh)
    return fresh
