"""`config.task = "pretrain"`: VideoMAE masked reconstruction of normalized pixels.

Trains with `config.masking` (any masker, optionally composed with a compressor); evaluation
reports the masked reconstruction loss and PSNR on held-out clips with a fixed masking key.
"""

from __future__ import annotations

from typing import Any

from mgvm import masking, models
from mgvm.tasks import common

PLOT_KEYS = ("loss",)


def num_classes(config, source) -> None:
  """Pre-training has no labels."""
  return None


def build_model(config, *, num_classes: int | None = None, seed: int | None = None):
  """A `VideoMAE` of `config.model`'s size (custom dims override the named size)."""
  sizes = common.custom_sizes(
    config.model, ("dim", "depth", "num_heads", "decoder_dim", "decoder_depth", "decoder_heads")
  )
  return models.VideoMAE(
    config.model.size or None,
    **sizes,
    pos_embed=config.model.get("pos_embed", "sinusoid"),
    encoder_norm=config.model.get("encoder_norm", True),
    **common.model_kwargs(config, seed),
  )


def viz_model(config, *, seed: int | None = None):
  """The model whose patch embeddings `mgvm.viz` scores."""
  return build_model(config, seed=seed)


def train_dataset(config, source, *, local_batch: int, start_step: int, num_classes=None):
  return common.train_clips(
    config, source, local_batch=local_batch, start_step=start_step, augment=False
  )


def train_step(config, graphdef, model, tx, schedule, *, num_classes=None):
  from mgvm.train import steps

  return steps.pretrain_step(
    graphdef,
    masking.build(config.masking, model.grid),
    tx,
    schedule,
    accum_steps=config.get("accum_steps", 1),
    normalization=config.data.get("normalization", "imagenet"),
  )


def evaluate(config, ctx: common.EvalContext) -> dict[str, Any]:
  """Masked reconstruction loss and PSNR over `ctx.split` (seed `config.seed + 1` for the masks)."""
  from mgvm.evaluate import reconstruction

  masker = masking.build(config.masking, ctx.model.grid)
  result = reconstruction.evaluate(
    ctx.graphdef,
    ctx.params,
    masker,
    common.eval_clips(config, ctx),
    ctx.mesh,
    seed=config.seed + 1,
    normalization=config.data.get("normalization", "imagenet"),
  )
  result["masking"] = config.masking.to_dict()
  return result


def summary(result: dict[str, Any]) -> str:
  return (
    f"masked reconstruction on {result['num_clips']} {result['split']} clips: "
    f"loss {result['loss']:.4f}, PSNR {result['psnr']:.2f} dB"
  )


def import_torch(config, checkpoint: str, *, num_classes=None, model=None):
  """A `VideoMAE` pre-training checkpoint (official `.pth` or Hugging Face directory)."""
  return common.import_videomae(config, checkpoint, kind="pretrain", model=model)
