"""rill.viz: pictures of what a model does.

images.py    tensors <-> PNG / GIF, grids, labelled grids
strip.py     the denoising strip (x and x̂0 along the σ grid)
preview.py   training previews (grids, point scatters, signal curves)
"""

from .images import make_grid, save_gif, save_grid, save_labeled_grid, save_png, to_pil, to_uint8
from .preview import save_preview
from .strip import DenoisingStrip, denoising_strip

__all__ = ["make_grid", "save_gif", "save_grid", "save_labeled_grid", "save_png", "to_pil", "to_uint8",
           "save_preview", "DenoisingStrip", "denoising_strip"]  # fmt: skip
