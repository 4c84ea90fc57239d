"""rill.viz.explain: figures that show what a diffusion model does, on the user's own model (`rill explain`).

    views = explain(Inputs(model, Path("explain"), prompt="a red circle", points=pts, mixture=gm))
    write_index(views, "explain", "rill explain: shapes", facts)

One file per view, each a function Inputs -> View (figures written into Inputs.out, numbers in View.numbers),
listed once in VIEWS. matplotlib is imported only when a view draws.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ._common import Inputs, View
from .developing import developing
from .guidance import guidance
from .index import write_index
from .noise_levels import noise_levels
from .paths import paths
from .steps import steps
from .training import training
from .water import water

__all__ = ["VIEWS", "Inputs", "View", "explain", "write_index"]

# name -> view, in the order index.html shows them
VIEWS: dict[str, Callable[[Inputs], View]] = {
    "developing": developing,
    "water": water,
    "paths": paths,
    "noise_levels": noise_levels,
    "guidance": guidance,
    "steps": steps,
    "training": training,
}


def explain(
    inp: Inputs, views: Sequence[str] | None = None, progress: Callable[[str], None] | None = None
) -> list[View]:
    """Run the named views (default: all of VIEWS) on `inp`; each View records its own wall and CPU time."""
    names = list(VIEWS) if views is None else list(views)
    unknown = [n for n in names if n not in VIEWS]
    if unknown:
        raise ValueError(f"unknown explain view(s) {unknown}; choose from {list(VIEWS)}")
    inp.out.mkdir(parents=True, exist_ok=True)
    done = []
    for name in names:
        t0, c0 = time.perf_counter(), time.process_time()
        view = VIEWS[name](inp)
        view.numbers["wall_s"] = round(time.perf_counter() - t0, 2)
        view.numbers["cpu_s"] = round(time.process_time() - c0, 2)  # all of this process's threads
        done.append(view)
        if progress is not None:
            progress(
                f"{name}: {'skipped (' + view.skipped + ')' if view.skipped else ', '.join(view.figures)}"
                f" in {view.numbers['wall_s']:.1f} s ({view.numbers['cpu_s']:.1f} CPU s)"
            )
    return done
