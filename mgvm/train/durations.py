"""Durations in steps or epochs (big_vision's `*_steps` / `*_epochs` convention).

Each duration is given by one of a pair of keys, the other left at 0:
- `total_steps` / `total_epochs`: the length of the run;
- `optim.warmup_steps` / `optim.warmup_epochs`: the linear warmup;
- `optim.decay_steps` / `optim.decay_epochs`: the boundaries of `optim.schedule="step"`.

An epoch is one pass over the training split's videos, counted as the references count it
(`len(dataset) // videos per step`, the last partial batch dropped): with repeated augmentation
(`data.num_sample` clips per video) a step sees `batch_size / num_sample` videos. Fractional
epochs round to the nearest step (halves up). The video count is `config.data.num_train_videos` when set,
else the data source's (the synthetic set, a prepared set's summary.json, a tfds split). For
detection an epoch visits every annotated keyframe (AVA's epoch, `summary.json`'s
`annotated_frames`), and `num_train_videos` counts those.
"""

from __future__ import annotations

import math
from typing import Callable

import ml_collections

# (config path of the steps key, config path of the epochs key); "" = top level.
PAIRS = (
  ("total_steps", "total_epochs"),
  ("optim.warmup_steps", "optim.warmup_epochs"),
  ("optim.decay_steps", "optim.decay_epochs"),
)


def _get(config, dotted: str, default=0):
  node = config
  for part in dotted.split("."):
    if part not in node:
      return default
    node = node[part]
  return node


def _set(config, dotted: str, value) -> None:
  *parents, leaf = dotted.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value


def _given(value) -> bool:
  if isinstance(value, (list, tuple)):
    return len(value) > 0
  return bool(value)


def uses_epochs(config) -> bool:
  """Whether any duration of `config` is given in epochs."""
  return any(_given(_get(config, epochs)) for _, epochs in PAIRS)


def videos_per_step(config) -> int:
  """Videos a training step sees: the global batch (clips) over `data.num_sample`."""
  num_sample = int(config.data.get("num_sample", 1) or 1)
  if config.batch_size % num_sample:
    raise ValueError(
      f"batch_size={config.batch_size} counts clips, data.num_sample={num_sample} per video: "
      f"it must be a multiple of num_sample"
    )
  return config.batch_size // num_sample


def steps_per_epoch(config, num_train_videos: int) -> int:
  """`num_train_videos // videos_per_step` (the references drop the last partial batch)."""
  per_step = videos_per_step(config)
  steps = int(num_train_videos) // per_step
  if steps < 1:
    raise ValueError(
      f"an epoch of {num_train_videos} training videos is less than one step of {per_step} "
      f"videos (batch_size={config.batch_size} / data.num_sample); lower batch_size or give "
      f"the durations in steps"
    )
  return steps


def _to_steps(epochs, per_epoch: int):
  """Epochs × steps per epoch, halves rounded up."""
  if isinstance(epochs, (list, tuple)):
    return tuple(math.floor(float(e) * per_epoch + 0.5) for e in epochs)
  return math.floor(float(epochs) * per_epoch + 0.5)


def check_pairs(config) -> None:
  """Exactly one key of each pair is given (the decay pair only for the step schedule)."""
  for steps_key, epochs_key in PAIRS:
    steps, epochs = _get(config, steps_key), _get(config, epochs_key)
    if _given(steps) and _given(epochs):
      raise ValueError(
        f"config sets both {steps_key}={steps!r} and {epochs_key}={epochs!r}: give one of them "
        f"and set the other to 0 (or ())"
      )
    required = steps_key == "total_steps" or (
      steps_key == "optim.decay_steps" and _get(config, "optim.schedule", "cosine") == "step"
    )
    if required and not (_given(steps) or _given(epochs)):
      raise ValueError(f"config sets neither {steps_key} nor {epochs_key}")


def resolve(config, num_train_videos: Callable[[], int | None] | int | None = None):
  """A copy of `config` whose `*_steps` keys hold the step counts (the `*_epochs` kept as given);
  `config` itself when every duration is in steps.

  `num_train_videos`: the source's training-split video count (or a function giving it, called
  only when a duration is in epochs); `config.data.num_train_videos` > 0 takes precedence.
  """
  check_pairs(config)
  if not uses_epochs(config):
    return config
  out = ml_collections.ConfigDict(config.to_dict())
  count = int(config.data.get("num_train_videos", 0) or 0)
  if not count:
    count = num_train_videos() if callable(num_train_videos) else num_train_videos
  if not count:
    raise ValueError(
      "durations are in epochs but the data source does not record the size of its training "
      "split: set config.data.num_train_videos (videos; for detection, annotated keyframes)"
    )
  per_epoch = steps_per_epoch(config, count)
  for steps_key, epochs_key in PAIRS:
    epochs = _get(config, epochs_key)
    if _given(epochs):
      _set(out, steps_key, _to_steps(epochs, per_epoch))
  if out.total_steps < 1:
    raise ValueError(f"total_epochs={config.total_epochs} is less than one step")
  return out


def describe(config, resolved, num_train_videos: int | None, what: str = "videos") -> str:
  """A log line: 'durations: total 800 epochs -> 93600 steps; warmup 40 epochs -> 4680 steps
  (240000 training videos // 2048 per step = 117 steps per epoch)'."""
  if not uses_epochs(config):
    return f"{resolved.total_steps} steps"
  count = int(config.data.get("num_train_videos", 0) or 0) or num_train_videos
  parts = [
    f"{e.rpartition('.')[2].split('_')[0]} {_get(config, e)} epochs -> {_get(resolved, s)} steps"
    for s, e in PAIRS
    if _given(_get(config, e))
  ]
  return (
    f"durations: {'; '.join(parts)} ({count} training {what} // {videos_per_step(config)} "
    f"per step = {steps_per_epoch(config, count)} steps per epoch)"
  )
