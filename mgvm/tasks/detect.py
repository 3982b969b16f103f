"""`config.task = "detect"`: EVAD action detection on keyframe clips.

A `VideoViT` with keyframe-centric token pruning, the Sparse R-CNN actor localizer and the
context refinement decoder (`mgvm.models.evad`); trained with the set + action losses of
`mgvm.train.detection`; evaluated by frame-mAP (AVA protocol) and GFLOPs per clip.

Input keys: `image_size` (int or (H, W)), `data.resize` ("square" | "short_side"),
`data.normalization`, `model.pos_grid`; evaluation keys: `eval.class_ids` or `eval.label_map`,
`eval.frame_order`, `eval.excluded_timestamps` (docs/evad.md).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import numpy as np

from mgvm import models
from mgvm.tasks import common

PLOT_KEYS = ("loss",)
EPOCH_OF = "keyframes"  # an epoch (`total_epochs`) visits every annotated keyframe, as AVA's

_log = logging.getLogger(__name__)


def num_classes(config, source) -> int:
  return common.num_classes_from_data(
    config, source, check_labels=False
  )  # box actions, not clip labels


def build_model(config, *, num_classes: int | None = None, seed: int | None = None):
  """`EVAD` from `config.model` (encoder) and `config.evad` (pruning, localizer, decoder)."""
  from mgvm.models import ktp
  from mgvm.models.evad import EVAD

  num_classes = common.require_num_classes(num_classes, "detector")
  mc, e = config.model, config.evad
  sizes = common.custom_sizes(mc, ("dim", "depth", "num_heads"))
  depth = sizes["depth"] or models.SIZES[mc.size].depth
  blocks = tuple(e.prune_blocks) or ktp.default_prune_blocks(depth)
  keep_rates = {int(b): float(e.keep_rate) for b in blocks} if e.keep_rate < 1.0 else {}
  localizer = dict(
    dim=e.localizer_dim,
    num_proposals=e.num_proposals,
    num_stages=e.num_stages,
    num_heads=e.localizer_heads,
    dynamic_dim=e.dynamic_dim,
    ffn_dim=e.ffn_dim,
  )
  return EVAD(
    mc.size or None,
    num_classes=num_classes,
    **sizes,
    **common.model_kwargs(config, seed),
    keep_rates=keep_rates,
    enhanced_weight=e.enhanced_weight,
    feature_blocks=tuple(e.feature_blocks) or None,
    decoder_dim=e.decoder_dim or None,
    decoder_depth=e.decoder_depth or None,
    decoder_heads=e.decoder_heads or None,
    decoder_drop_path_rate=e.decoder_drop_path_rate,
    action_hidden=e.action_hidden,
    roi_extension=tuple(e.roi_extension),
    official_order=e.official_order,
    localizer=localizer,
  )


def viz_model(config, *, seed: int | None = None):
  """The model whose patch embeddings `mgvm.viz` scores (the head's size does not matter)."""
  return build_model(config, num_classes=1, seed=seed)


def train_dataset(config, source, *, local_batch: int, start_step: int, num_classes: int):
  from mgvm.data import detection

  d = config.data
  return detection.make_detection_dataset(
    source.split(d.train_split),
    mode="train",
    num_frames=config.num_frames,
    image_size=config.image_size,
    batch_size=local_batch,
    num_classes=num_classes,
    max_boxes=config.evad.max_boxes,
    resize=d.get("resize", "square"),
    target_fps=d.target_fps or None,
    frame_stride=d.frame_stride,
    flip=d.flip,
    seed=config.seed,
    shuffle_buffer=d.shuffle_buffer,
    start_step=start_step,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    threads=d.get("threads", 0),
    host_independent_batches=d.get("host_independent_batches", False),
    label_offset=d.get("label_offset", 0),
  )


def train_step(config, graphdef, model, tx, schedule, *, num_classes: int):
  from mgvm.train import detection as detection_lib

  if config.get("accum_steps", 1) != 1:
    # the set and action losses are normalised by the batch's box count, not per clip, so the
    # mean over micro-batches would not be the batch's loss
    raise ValueError(
      f"accum_steps={config.accum_steps}: gradient accumulation is not available for "
      f"task 'detect'; use accum_steps=1 (docs/scale.md)"
    )
  return detection_lib.detect_step(
    graphdef,
    tx,
    schedule,
    image_hw=model.image_hw,
    weights=config.evad.loss_weights.to_dict(),
    normalization=normalization(config),
  )


def normalization(config) -> str:
  """`config.data.normalization`, checked (an unknown name fails naming the key)."""
  from mgvm.data.device_ops import normalization_stats

  name = config.data.get("normalization", "imagenet")
  normalization_stats(name)
  return name


def eval_class_ids(config, num_classes: int) -> list[int] | None:
  """The class ids frame-mAP scores: `config.eval.class_ids`, or the ids of the label map at
  `config.eval.label_map` (AVA's 60-class `ava_action_list_v2.2_for_activitynet_2019.pbtxt`),
  given as the data stores them (AVA's action ids) and returned as classes (minus
  `config.data.label_offset`); None (neither set): every trained class."""
  e = config.eval
  ids = tuple(int(c) for c in (e.get("class_ids", ()) or ()))
  label_map = e.get("label_map", "")
  if ids and label_map:
    raise ValueError(
      "set config.eval.class_ids or config.eval.label_map, not both (the label map's ids are "
      "the classes scored)"
    )
  where = f"config.eval.class_ids={ids}"
  if label_map:
    from mgvm.datasets.annotations import read_label_map

    ids = tuple(sorted(read_label_map(label_map)))
    where = f"config.eval.label_map={label_map}"
  offset = int((config.get("data") or {}).get("label_offset", 0))
  outside = sorted({c for c in ids if not 0 <= c - offset < num_classes})
  if outside:
    raise ValueError(
      f"{where}: class ids {outside} are outside the {num_classes} trained classes "
      f"[{offset}, {num_classes + offset}) (ids are the labels the data stores, e.g. AVA's "
      f"1-based action ids, class = id - config.data.label_offset={offset})"
    )
  return [c - offset for c in ids] or None


def split_timestamp_offset(source, split: str) -> float:
  """The clock offset of `split`'s stored frames: `boxes_offset` of the split's prepare summary
  (`mgvm.datasets.prepare --boxes-offset`; 900 for AVA's 15-minute cuts), else 0."""
  path = os.path.join(str(source.root), f"{split}.summary.json")
  if not os.path.exists(path):
    return 0.0
  with open(path) as f:
    return float(json.load(f).get("boxes_offset", 0.0) or 0.0)


def eval_excluded(config, source, split: str) -> tuple[set, float]:
  """(AVA excluded `(video_id, second)` pairs of `config.eval.excluded_timestamps`, the split's
  timestamp offset); (empty, 0) when the key is unset."""
  path = config.eval.get("excluded_timestamps", "")
  if not path:
    return set(), 0.0
  from mgvm.datasets.annotations import read_ava_excluded

  excluded = read_ava_excluded(path)
  offset = split_timestamp_offset(source, split)
  _log.info("%s: %d excluded timestamps, offset %g s", path, len(excluded), offset)
  return excluded, offset


def evaluate(config, ctx: common.EvalContext) -> dict[str, Any]:
  """frame-mAP on `ctx.split`'s keyframes and GFLOPs per clip of an EVAD checkpoint."""
  from mgvm.data import detection, pipeline
  from mgvm.evaluate import detection as detection_eval

  class_ids = eval_class_ids(config, ctx.num_classes)  # bad keys fail before any data is read
  excluded, offset = eval_excluded(config, ctx.source, ctx.split)
  files = ctx.source.split(ctx.split)
  keyframes_per_video = config.eval.get("keyframes_per_video", 1)
  hosts = jax.process_count()
  ds = detection.make_detection_dataset(
    files,
    mode="eval",
    process_index=jax.process_index(),
    process_count=hosts,
    eval_batches=detection.eval_num_batches(  # every host runs the same number of batches
      files,
      batch_size=ctx.local_batch,
      keyframes_per_video=keyframes_per_video,
      process_count=hosts,
    )
    if hosts > 1
    else None,
    num_frames=config.num_frames,
    image_size=config.image_size,
    batch_size=ctx.local_batch,
    num_classes=ctx.num_classes,
    max_boxes=config.evad.max_boxes,
    resize=config.data.get("resize", "square"),
    target_fps=common.eval_target_fps(config.data.target_fps),
    frame_stride=config.data.frame_stride,
    keyframes_per_video=keyframes_per_video,
    threads=config.data.get("threads", 0),
    label_offset=config.data.get("label_offset", 0),
  )
  batches = common.limit_batches(pipeline.numpy_batches(ds), config)
  result = detection_eval.evaluate(
    ctx.graphdef,
    ctx.params,
    batches,
    ctx.mesh,
    num_classes=ctx.num_classes,
    image_hw=ctx.model.image_hw,
    person_threshold=config.evad.person_threshold,
    class_ids=class_ids,
    frame_order=config.eval.get("frame_order", "score"),
    excluded=excluded,
    timestamp_offset=offset,
    normalization=normalization(config),
  )
  e = config.evad
  result.update(
    tokens=f"{ctx.model.num_kept_tokens} of {int(np.prod(ctx.model.grid))} leave the encoder",
    keep_rate=e.keep_rate,
    enhanced_weight=e.enhanced_weight,
    official_order=e.official_order,
  )
  return result


def summary(result: dict[str, Any]) -> str:
  return (
    f"frame-mAP@{result['iou_threshold']:g} {result['frame_map']:.3f} on "
    f"{result['num_keyframes']} {result['split']} keyframes ({result['num_gt']} "
    f"ground-truth actions); {result['gflops_per_clip']:.3g} GFLOPs per clip "
    f"(encoder {result['encoder_gflops_per_clip']:.3g}; {result['tokens']})"
  )


def import_torch(config, checkpoint: str, *, num_classes=None, model=None):
  raise ValueError(
    "--checkpoint imports VideoMAE weights (pre-training or classifier); an "
    "EVAD detector is evaluated from its own workdir"
  )
