"""rill.eval: sample-quality metrics (FD, precision / recall, diversity, saturation), feature nets trained on
the real data, prompt adherence, likelihood through the probability-flow ODE, and `rill eval` (cli.py)."""

from .adherence import ClipScorer, DigitJudge, digit_adherence, shapes_adherence
from .features import FeatureCNN, HFImageFeatures, classifier_for, extract_features
from .likelihood import bits_per_dim, dequantize, log_likelihood
from .metrics import (
    diversity,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    precision_recall,
    saturation,
)
from .run import default_prompts, evaluate_model, format_table, read_prompt_file, to_jsonable
from .shapes_check import check_image, check_images, detect_objects

__all__ = [
    "frechet_distance", "frechet_distance_from_stats", "gaussian_stats", "precision_recall", "diversity",
    "saturation", "FeatureCNN", "classifier_for", "extract_features", "HFImageFeatures", "DigitJudge",
    "digit_adherence", "shapes_adherence", "ClipScorer", "check_image", "check_images", "detect_objects",
    "log_likelihood", "bits_per_dim", "dequantize", "evaluate_model", "default_prompts", "read_prompt_file",
    "format_table", "to_jsonable",
]  # fmt: skip
