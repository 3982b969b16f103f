"""What the tasks share: model sizes from a config, class counts, clip data sets, weight import."""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any, Iterator

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class EvalContext:
  """Everything a task's `evaluate` needs besides the config (built by `mgvm.run.evaluate`)."""

  source: Any  # mgvm.data.sources.Source
  split: str
  graphdef: nnx.GraphDef
  params: Any  # the model's nnx.Param state, replicated on `mesh`
  mesh: Any
  local_batch: int
  num_classes: int | None
  model: nnx.Module  # abstract (nnx.eval_shape): grid, image_hw, token counts


def custom_sizes(model_config, keys) -> dict[str, int | None]:
  """`config.model` fields that override the named size (0 / unset = the size's own value)."""
  return {k: model_config[k] or None for k in keys}


def model_kwargs(config, seed: int | None = None) -> dict[str, Any]:
  """Constructor arguments every video model takes, from `config`."""
  mc = config.model
  return dict(
    num_frames=config.num_frames,
    image_size=config.image_size,
    tubelet=tuple(int(v) for v in mc.get("tubelet", (2, 16, 16))),
    drop_path_rate=mc.drop_path_rate,
    attention=mc.get("attention", "auto"),
    remat=mc.get("remat", "none"),
    pos_grid=tuple(mc.get("pos_grid", ())),
    dtype=jnp.dtype(mc.dtype),
    rngs=nnx.Rngs(config.seed if seed is None else seed),
  )


def num_classes_from_data(config, source, *, check_labels: bool = True) -> int:
  """`config.num_classes`, checked against the data set's class list, or the data set's count.

  With `check_labels`, a data set whose largest stored label (`source.max_label`, from the
  summary of `mgvm.datasets.prepare`) is outside `[0, num_classes)` fails here, before training.
  """
  max_label = source.max_label
  if config.get("num_classes"):
    if source.num_classes and config.num_classes != source.num_classes:
      raise ValueError(
        f"config.num_classes={config.num_classes} but the data set at "
        f"{source.root} has {source.num_classes} classes"
      )
    count = config.num_classes
  elif source.num_classes:
    count = source.num_classes
  else:
    hint = (
      f"; its labels suggest num_classes >= {max_label + 1} ({source.label_info})"
      if max_label is not None
      else ""
    )
    raise ValueError(
      f"set config.num_classes: the data set at {source.root} does not list its classes{hint}"
    )
  if check_labels and max_label is not None and max_label >= count:
    fix = (
      f"the data set lists {count} classes: fix the labels"
      if source.num_classes
      else f"set config.num_classes={max_label + 1} or more, or fix the labels"
    )
    raise ValueError(
      f"label {max_label} is outside [0, {count}) (num_classes={count}): {source.label_info}; {fix}"
    )
  return count


def require_num_classes(num_classes: int | None, what: str) -> int:
  if not num_classes:
    raise ValueError(f"a {what} needs num_classes (config.num_classes or the data set's)")
  return num_classes


def eval_target_fps(target_fps):
  """The evaluation rate: `target_fps`, or the first entry of a list (None for 0 / None)."""
  if isinstance(target_fps, (list, tuple)):
    return target_fps[0] if target_fps else None
  return target_fps or None


def frame_selection(config) -> dict[str, Any]:
  """`make_dataset`'s frame-selection arguments from `config.data` (experimental, off by
  default): frames chosen in groups of the tubelet's length, so a tubelet spans adjacent frames."""
  d = config.data
  return dict(
    frame_selection=d.get("frame_selection", ""),
    frame_selection_window=d.get("frame_selection_window", 2),
    frame_selection_group=int(config.model.get("tubelet", (2, 16, 16))[0]),
  )


def needs_motion(config) -> bool:
  """Whether `config.masking` (a masker, a compressor or a composition) reads the codec motion
  field (`Masker.needs_motion`), built for the config's token grid."""
  from mgvm import masking
  from mgvm.models.vit import token_grid

  spec = config.get("masking")
  if spec is None or not spec.get("kind"):
    return False
  tubelet = tuple(int(v) for v in config.model.get("tubelet", (2, 16, 16)))
  grid = token_grid(config.num_frames, config.image_size, tubelet)
  return masking.build(spec, grid).needs_motion


def motion_arguments(config) -> dict[str, Any]:
  """`make_dataset`'s motion arguments: the codec motion field (on the token grid: blocks of
  the tubelet's patch size) only when `config.masking` needs it."""
  needed = needs_motion(config)
  tubelet = tuple(int(v) for v in config.model.get("tubelet", (2, 16, 16)))
  if needed and tubelet[1] != tubelet[2]:
    raise ValueError(
      f"config.masking reads the codec motion field on square blocks, but the tubelet "
      f"{tubelet} has non-square patches"
    )
  return dict(motion=needed, motion_block=tubelet[1])


def train_clips(
  config, source, *, local_batch: int, start_step: int, augment: bool, num_classes=None
):
  """The training clips of `config.data` (`augment`: RandAugment and random erasing as configured),
  with the codec motion field when `config.masking` needs it (`motion_arguments`).

  `num_classes`: a label outside `[0, num_classes)` fails the iterator (`pipeline.BadDataError`
  through `pipeline.numpy_batches`).
  """
  from mgvm.data import pipeline

  d = config.data
  return pipeline.make_dataset(
    source.split(d.train_split),
    mode=config.task,
    num_frames=config.num_frames,
    image_size=config.image_size,
    batch_size=local_batch,
    target_fps=d.target_fps or None,
    frame_stride=d.frame_stride,
    temporal=d.temporal,
    seed=config.seed,
    shuffle_buffer=d.shuffle_buffer,
    flip=d.flip,
    crop_scale=tuple(d.crop_scale),
    rand_augment=d.rand_augment if augment else "",
    random_erase=d.random_erase if augment else 0.0,
    num_sample=d.num_sample,
    start_step=start_step,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    parse_fn=source.parse_fn,
    num_classes=num_classes,
    threads=d.get("threads", 0),
    host_independent_batches=d.get("host_independent_batches", False),
    **frame_selection(config),
    **motion_arguments(config),
  )


def eval_clips(
  config, ctx: EvalContext, *, num_clips: int = 1, num_crops: int = 1, num_classes=None
) -> Iterator[dict]:
  """Numpy batches of every view of `ctx.split` (padded, masked rows), `config.eval.max_batches` at most,
  with the codec motion field when `config.masking` needs it.

  `num_classes`: a label outside `[0, num_classes)` raises `pipeline.BadDataError`.
  """
  from mgvm.data import pipeline

  files = ctx.source.split(ctx.split)
  # every host runs the same number of batches (fully masked ones after its own data)
  same_count = (
    pipeline.eval_num_batches(
      files,
      batch_size=ctx.local_batch,
      num_clips=num_clips,
      num_crops=num_crops,
      process_count=jax.process_count(),
    )
    if jax.process_count() > 1
    else None
  )
  ds = pipeline.make_dataset(
    files,
    mode="eval",
    eval_batches=same_count,
    num_frames=config.num_frames,
    image_size=config.image_size,
    batch_size=ctx.local_batch,
    target_fps=eval_target_fps(config.data.target_fps),
    frame_stride=config.data.frame_stride,
    temporal=config.data.temporal,
    num_clips=num_clips,
    num_crops=num_crops,
    parse_fn=ctx.source.parse_fn,
    threads=config.data.get("threads", 0),
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    num_classes=num_classes,
    **frame_selection(config),
    **motion_arguments(config),
  )
  return limit_batches(pipeline.numpy_batches(ds), config)


def limit_batches(batches: Iterator[dict], config) -> Iterator[dict]:
  """The first `config.eval.max_batches` batches (all of them for 0)."""
  if config.eval.max_batches:
    return itertools.islice(batches, config.eval.max_batches)
  return batches


def import_videomae(
  config, checkpoint: str, *, kind: str, num_classes: int | None = None, model=None
):
  """Params of an official VideoMAE `.pth` or a Hugging Face directory, built for the config's clips.

  Sizes come from the file; where it cannot say (the heads of a width outside the official
  table), `model`'s (the abstract model the config describes) fill in.
  """
  from mgvm.weights import load_torch_checkpoint
  from mgvm.weights.torch_import import UnknownHeadsError

  extra = {} if kind == "pretrain" else {"num_classes": num_classes}
  encoder, decoder = heads_by_width(model) if model is not None else ({}, {})
  kwargs = dict(kind=kind, num_frames=config.num_frames, image_size=config.image_size, **extra)
  try:
    loaded = load_torch_checkpoint(
      checkpoint, heads_by_width=encoder, decoder_heads_by_width=decoder, **kwargs
    )
  except UnknownHeadsError:
    if model is None:
      raise
    # A width the config does not have: the weights cannot fit its model whatever the heads,
    # so build with one head only to list the differing shapes (`check_params_fit`).
    heads = {"decoder_heads": 1} if kind == "pretrain" else {}
    loaded = load_torch_checkpoint(checkpoint, num_heads=1, **heads, **kwargs)
  return nnx.state(loaded, nnx.Param)


def _positions_for(params: dict, stored, grid) -> dict:
  """A workdir's params with a learned `pos_embed` resized from the run's grid to `grid` (logged)."""
  from mgvm.trees import flatten_dict, unflatten_dict
  from mgvm.weights.resize import resize_positions

  if stored is None or tuple(stored) == tuple(grid):
    return params
  flat = resize_positions(flatten_dict(params), stored, grid, log=print, what="init_from run")
  return unflatten_dict(flat)


def init_from_params(config, init_from: str, model) -> dict:
  """The pure-dict params whose encoder `config.init_from` names: the latest params of an mgvm
  workdir, or an official VideoMAE / VideoMAE v2 / MGMAE / EVEREST `.pth` or a Hugging Face
  directory (pre-training or fine-tuned; read without running pickled code, `module.` /
  `_orig_mod.` / `backbone.` prefixes tolerated). `model` is the abstract model being trained
  (its attention heads fill in what the file cannot say; a workdir's learned position table is
  interpolated to its grid, `mgvm.weights.resize`)."""
  from mgvm.train import checkpoint as checkpoint_lib
  from mgvm.weights.checkpoints import recorded_grid
  from mgvm.workdir import checkpoint_dir

  if os.path.isdir(checkpoint_dir(init_from)):
    params = checkpoint_lib.load_params(checkpoint_dir(init_from))
    return _positions_for(params, recorded_grid(init_from), tuple(model.grid))
  if not os.path.exists(init_from):
    raise FileNotFoundError(
      f"config.init_from={init_from!r}: no such workdir, checkpoint file or directory"
    )
  if os.path.isdir(init_from) and not os.path.exists(os.path.join(init_from, "config.json")):
    raise FileNotFoundError(
      f"config.init_from={init_from!r} is neither an mgvm workdir (no checkpoints/ in it) nor a "
      f"Hugging Face directory (no config.json in it)"
    )
  try:
    params = import_videomae(config, init_from, kind="pretrain", model=model)
  except ValueError as e:
    if "needs a pre-training checkpoint" not in str(e):
      raise
    try:  # a fine-tuned (or encoder-only) model: its head, if any, goes unused
      params = import_videomae(config, init_from, kind="classifier", model=model)
    except ValueError as e:
      if "pass num_classes=" not in str(e):
        raise
      params = import_videomae(config, init_from, kind="classifier", num_classes=1, model=model)
  return params.to_pure_dict()


def heads_by_width(model) -> tuple[dict[int, int], dict[int, int]]:
  """({width: heads} of the encoder's attention, the same of the decoder's) in `model`."""
  encoder: dict[int, int] = {}
  decoder: dict[int, int] = {}
  for path, node in nnx.iter_graph(model):
    heads, qkv = getattr(node, "num_heads", None), getattr(node, "qkv", None)
    if isinstance(heads, int) and qkv is not None:
      width = int(qkv.kernel.shape[0])
      (decoder if "decoder" in map(str, path) else encoder)[width] = heads
  return encoder, decoder
