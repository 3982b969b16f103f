"""Flax NNX video models: `VideoViT`, `VideoMAE`, `VideoClassifier`, and `EVAD` (KTP pruning in
`ktp`, the actor localizer in `localizer`). Weight import / export lives in `mgvm.weights`."""

from mgvm.models.classifier import VideoClassifier
from mgvm.models.mae import VideoMAE
from mgvm.models.vit import SIZES, VideoViT, sinusoid_table, token_grid

__all__ = ["SIZES", "VideoClassifier", "VideoMAE", "VideoViT", "sinusoid_table", "token_grid"]
