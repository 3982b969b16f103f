"""`config.task = "finetune"`: a `VideoClassifier`, optionally on a compressor's kept tokens.

Trains with smoothed one-hot targets and mixup / cutmix; evaluation reports top-1 / top-5 with
softmax averaged over `config.eval.num_clips` x `num_crops` views.
"""

from __future__ import annotations

from typing import Any

from mgvm import masking, models
from mgvm.tasks import common

PLOT_KEYS = ("loss", "accuracy")


def num_classes(config, source) -> int:
  """The data set's class count (or `config.num_classes`); a classifier needs at least two."""
  count = common.num_classes_from_data(config, source)
  if count < 2:
    raise ValueError(
      f"a classifier needs at least 2 classes, got num_classes={count} (its softmax loss would be "
      f"0 whatever it predicts); data: {source.root}"
    )
  return count


def build_model(config, *, num_classes: int | None = None, seed: int | None = None):
  """A `VideoClassifier` of `config.model`'s size with a `num_classes` head."""
  num_classes = common.require_num_classes(num_classes, "classifier")
  sizes = common.custom_sizes(config.model, ("dim", "depth", "num_heads"))
  return models.VideoClassifier(
    config.model.size or None,
    num_classes=num_classes,
    fc_drop_rate=config.model.fc_drop_rate,
    pos_embed=config.model.get("pos_embed", "sinusoid"),
    **sizes,
    **common.model_kwargs(config, seed),
  )


def viz_model(config, *, seed: int | None = None):
  """The model whose patch embeddings `mgvm.viz` scores (the head's size does not matter)."""
  return build_model(config, num_classes=1, seed=seed)


def compressor(config, grid):
  """The compressor of a fine-tuning config (`config.masking`, kind mgtc / everest / rlt), or None."""
  spec = config.get("masking")
  if spec is None or not spec.get("kind"):
    return None
  built = masking.build(spec, grid)
  if built.num_target:
    raise ValueError(
      f"fine-tuning takes a compressor in config.masking (kinds "
      f"{sorted(masking.COMPRESSORS)}), got kind {built.kind!r}, which masks tokens "
      f"for reconstruction"
    )
  return built


def train_dataset(config, source, *, local_batch: int, start_step: int, num_classes=None):
  """Augmented training clips; a label outside `[0, num_classes)` fails the first batch holding it."""
  return common.train_clips(
    config,
    source,
    local_batch=local_batch,
    start_step=start_step,
    augment=True,
    num_classes=num_classes,
  )


def train_step(config, graphdef, model, tx, schedule, *, num_classes: int):
  from mgvm.train import steps

  return steps.finetune_step(
    graphdef,
    tx,
    schedule,
    num_classes=num_classes,
    label_smoothing=config.label_smoothing,
    mixup_config=config.mixup,
    compressor=compressor(config, model.grid),
    accum_steps=config.get("accum_steps", 1),
    normalization=config.data.get("normalization", "imagenet"),
  )


def evaluate(config, ctx: common.EvalContext) -> dict[str, Any]:
  """Top-k accuracy over every view of `ctx.split`; the compressor's token count when one is set."""
  from mgvm.evaluate import classification

  views = (config.eval.num_clips, config.eval.num_crops)
  squeeze = compressor(config, ctx.model.grid)
  batches = common.eval_clips(
    config, ctx, num_clips=views[0], num_crops=views[1], num_classes=ctx.num_classes
  )
  result = classification.evaluate(
    ctx.graphdef,
    ctx.params,
    batches,
    ctx.mesh,
    ctx.num_classes,
    compressor=squeeze,
    normalization=config.data.get("normalization", "imagenet"),
  )
  result["views"] = f"{views[0]} clips x {views[1]} crops"
  if squeeze is not None:
    tokens = f"{squeeze.num_keep} of {squeeze.num_tokens}"
    if squeeze.variable_length:  # RLT's threshold form: a count per view, at most num_keep
      tokens = f"{result.pop('mean_tokens'):.1f} on average (at most {tokens})"
    result["compression"] = {"kind": squeeze.kind, **squeeze.params, "tokens": tokens}
  return result


def summary(result: dict[str, Any]) -> str:
  ratio = result["top1"] / result["chance"]
  return (
    f"top-1 {result['top1']:.3f}"
    + (f" (top-5 {result['top5']:.3f})" if "top5" in result else "")
    + " on "
    f"{result['num_videos']} {result['split']} videos, {result['views']}: "
    f"{ratio:.1f}x chance ({result['chance']:.3f})"
  )


def import_torch(config, checkpoint: str, *, num_classes: int | None = None, model=None):
  """A classifier (or a pre-training checkpoint's encoder under a new head) from torch weights."""
  return common.import_videomae(
    config, checkpoint, kind="classifier", num_classes=num_classes, model=model
  )
