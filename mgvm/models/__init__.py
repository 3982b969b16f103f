"""Flax NNX video models: `VideoViT`, `VideoMAE`, `VideoClassifier`."""

from mgvm.models.classifier import VideoClassifier
from mgvm.models.mae import VideoMAE
from mgvm.models.vit import SIZES, VideoViT, sinusoid_table, token_grid

__all__ = ["SIZES", "VideoClassifier", "VideoMAE", "VideoViT", "sinusoid_table", "token_grid"]
