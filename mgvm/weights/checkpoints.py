"""Open any checkpoint a tool is given: an mgvm workdir, an official `.pth` or a Hugging Face directory.

`load_model(path)` returns a `LoadedModel`: the model with its weights (a `VideoMAE` or a
`VideoClassifier`), what it is, the clip it runs on and what is known about its data (class
names, normalization, the frame sampling and test views of a workdir's run). `num_frames` /
`image_size` build it for another clip: fixed sinusoid positions are rebuilt, a learned table
is interpolated (`mgvm.weights.resize`), and the log says which. Used by `mgvm.features`,
`mgvm.predict` and `mgvm.export` (docs/tools.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgvm.models.classifier import VideoClassifier
from mgvm.models.mae import VideoMAE
from mgvm.models.vit import token_grid
from mgvm.trees import flatten_dict
from mgvm.weights.params import import_params
from mgvm.weights.resize import resize_positions

__all__ = ["DEFAULT_SAMPLING", "LoadedModel", "load_model", "recorded_grid"]

# What a file without a run's config implies: VideoMAE's Kinetics setting (every 4th frame,
# `mgvm.features.DEFAULT_STRIDE`) and its test views are the tools' defaults.
DEFAULT_SAMPLING = {"target_fps": None, "frame_stride": 4, "num_clips": None, "num_crops": None}


@dataclasses.dataclass
class LoadedModel:
  """A model with its weights and what is known about how it was trained."""

  model: VideoMAE | VideoClassifier
  kind: str  # "pretrain" (VideoMAE) or "classifier" (VideoClassifier)
  source: str  # where the weights came from, for logs
  num_frames: int
  image_size: tuple[int, int]
  normalization: str = "imagenet"  # mgvm.data.device_ops.NORMALIZATIONS
  class_names: tuple[str, ...] = ()
  sampling: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SAMPLING))
  config: dict[str, Any] | None = None  # a workdir's recorded config

  @property
  def grid(self) -> tuple[int, int, int]:
    return self.model.grid

  def label_names(self, labels: str = "") -> list[str]:
    """A classifier's class names: the file `labels` (one per line, line k = class k; checked
    against the head), else the checkpoint's `class_names`, else `class_<k>`."""
    from mgvm.datasets.video_list import read_classes

    count = int(self.model.num_classes)
    if labels:
      names = read_classes(labels)
      if len(names) != count:
        raise ValueError(
          f"--labels {labels}: {len(names)} class names, but the checkpoint's head has {count} "
          "classes"
        )
      return names
    if len(self.class_names) == count:
      return list(self.class_names)
    return [f"class_{k}" for k in range(count)]


def _hw(size) -> tuple[int, int]:
  return (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(map(int, size))


def _is_workdir(path: str) -> bool:
  from mgvm.workdir import checkpoint_dir

  return os.path.isdir(checkpoint_dir(path))


def _workdir_config(path: str):
  import ml_collections

  from mgvm.workdir import config_path

  recorded = config_path(path)
  if not os.path.exists(recorded):
    raise FileNotFoundError(
      f"{recorded} is missing: the workdir does not record the model it trained (a run of an "
      "older mgvm?), so its size is unknown"
    )
  with open(recorded) as f:
    return ml_collections.ConfigDict(json.load(f))


def _run_grid(config) -> tuple[int, int, int]:
  """The (T', h, w) token grid of a run's config."""
  tubelet = tuple(int(v) for v in config.model.get("tubelet", (2, 16, 16)))
  return token_grid(int(config.num_frames), _hw(config.image_size), tubelet)


def recorded_grid(path: str) -> tuple[int, int, int] | None:
  """The (T', h, w) token grid of the run a workdir recorded, or None when it records none."""
  from mgvm.workdir import config_path

  if not os.path.exists(config_path(path)):
    return None
  return _run_grid(_workdir_config(path))


def _load_workdir(path, num_frames, image_size, dtype, log) -> LoadedModel:
  from mgvm import tasks
  from mgvm.data import sources
  from mgvm.workdir import latest_params

  config = _workdir_config(path)
  if config.task not in ("pretrain", "finetune"):
    raise ValueError(
      f"{path} is a {config.task!r} run; the tools read pre-training and fine-tuning runs "
      "(VideoMAE / classifier), evaluate detectors with eval.py"
    )
  params, origin = _quietly(latest_params, path)
  flat = {k: np.asarray(v) for k, v in flatten_dict(params).items()}
  stored = _run_grid(config)
  with config.unlocked():
    config.num_frames = int(num_frames or config.num_frames)
    config.image_size = image_size or config.image_size
    config.model.dtype = jnp.dtype(dtype).name
  flat = resize_positions(flat, stored, _run_grid(config), log=log)
  task = tasks.get(config.task)
  num_classes = None
  if config.task == "finetune":
    num_classes = int(flat["head.kernel"].shape[-1])
  model = nnx.eval_shape(lambda: task.build_model(config, num_classes=num_classes))
  import_params(model, flat)
  data = config.data
  return LoadedModel(
    model=model,
    kind="pretrain" if config.task == "pretrain" else "classifier",
    source=f"mgvm workdir {origin}",
    num_frames=int(config.num_frames),
    image_size=_hw(config.image_size),
    normalization=data.get("normalization", "imagenet"),
    class_names=sources.class_names(data),
    sampling={
      "target_fps": _eval_fps(data.get("target_fps")),
      "frame_stride": int(data.get("frame_stride", 4)),
      "num_clips": int(config.eval.num_clips),
      "num_crops": int(config.eval.num_crops),
    },
    config=config.to_dict(),
  )


def _quietly(fn, *args):
  """`fn(*args)` without orbax's warnings about opening a checkpoint read-only."""
  from absl import logging as absl_logging

  before = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    return fn(*args)
  finally:
    absl_logging.set_verbosity(before)


def _eval_fps(target_fps):
  """A run's test rate: its `target_fps`, the first when training drew from a list."""
  if isinstance(target_fps, (list, tuple)):
    return float(target_fps[0]) if target_fps else None
  return float(target_fps) if target_fps else None


def _hf_class_names(path: str) -> tuple[str, ...]:
  config_path = os.path.join(path, "config.json") if os.path.isdir(path) else ""
  if not config_path or not os.path.exists(config_path):
    return ()
  with open(config_path) as f:
    id2label = json.load(f).get("id2label") or {}
  names = [id2label[k] for k in sorted(id2label, key=int)]
  if all(name == f"LABEL_{k}" for k, name in enumerate(names)):
    return ()  # transformers' placeholders
  return tuple(names)


def _load_torch(path, num_frames, image_size, dtype, log, num_heads) -> LoadedModel:
  from mgvm.weights.torch_import import load_torch_checkpoint

  kwargs = dict(num_frames=num_frames, image_size=image_size, dtype=dtype, log=log)
  if num_heads:
    kwargs["num_heads"] = int(num_heads)
  model = load_torch_checkpoint(path, kind="auto", **kwargs)  # read once
  kind = "classifier" if isinstance(model, VideoClassifier) else "pretrain"
  what = "Hugging Face directory" if os.path.isdir(path) else "PyTorch checkpoint"
  return LoadedModel(
    model=model,
    kind=kind,
    source=f"{what} {path}",
    num_frames=int(model.grid[0] * model.encoder.tubelet[0]),
    image_size=(
      int(model.grid[1] * model.encoder.tubelet[1]),
      int(model.grid[2] * model.encoder.tubelet[2]),
    ),
    class_names=_hf_class_names(path),
  )


def load_model(
  path: str,
  *,
  num_frames: int | None = None,
  image_size: int | tuple[int, int] | None = None,
  dtype=jnp.float32,
  num_heads: int | None = None,
  log: Callable[[str], None] | None = print,
) -> LoadedModel:
  """The model in `path`: an mgvm workdir (its latest checkpoint and recorded config), an official
  VideoMAE `.pth` / `.safetensors` file or a Hugging Face directory (a classifier when it has a
  head, else the pre-training model, which needs its decoder).

  `num_frames` / `image_size` build the model for another clip (default: the one it was trained
  on; 16 × 224 for a file that does not say). `dtype` is the compute dtype (params stay float32).
  `num_heads`: the encoder's attention heads, for a `.pth` of a width outside the official table
  (a workdir and a Hugging Face directory record theirs).
  Raises `FileNotFoundError` naming the path when there is nothing to read, and the loaders'
  errors (`CheckpointMismatchError`, `UnsafeCheckpointError`, `ValueError`) otherwise.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint {path} does not exist")
  if _is_workdir(path):
    loaded = _load_workdir(path, num_frames, image_size, dtype, log)
  elif os.path.isdir(path) and not os.path.exists(os.path.join(path, "config.json")):
    raise FileNotFoundError(
      f"{path} is neither an mgvm workdir (no checkpoints/ in it) nor a Hugging Face "
      "directory (no config.json in it)"
    )
  else:
    loaded = _load_torch(path, num_frames, image_size, dtype, log, num_heads)
  if log is not None:
    log(
      f"loaded {loaded.kind} ({type(loaded.model).__name__}, width {loaded.model.encoder.dim}, "
      f"depth {loaded.model.encoder.depth}) from {loaded.source}; clip {loaded.num_frames} x "
      f"{loaded.image_size[0]} x {loaded.image_size[1]}, token grid {loaded.grid}"
    )
  return loaded
