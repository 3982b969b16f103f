"""Multi-view classification: softmax per view, averaged over views (docs/algorithms.md §1.7), top-k."""

from __future__ import annotations

from typing import Iterable, Sequence

import jax
import numpy as np
from flax import nnx

from mgvm.data.device_ops import model_video, normalization_stats


class ViewAggregator:
  """Accumulates per-view class probabilities by video; padded rows (mask False) are ignored."""

  def __init__(self, num_classes: int):
    self.num_classes = num_classes
    self.sums: dict[int, np.ndarray] = {}
    self.views: dict[int, int] = {}
    self.labels: dict[int, int] = {}

  def add(
    self,
    probs: np.ndarray,
    video_index: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray | None = None,
  ) -> None:
    probs, video_index, labels = np.asarray(probs), np.asarray(video_index), np.asarray(labels)
    mask = np.ones(len(probs), bool) if mask is None else np.asarray(mask, bool)
    for p, v, y in zip(probs[mask], video_index[mask], labels[mask]):
      v, y = int(v), int(y)
      if v in self.labels and self.labels[v] != y:
        raise ValueError(f"video {v}: views disagree on the label ({self.labels[v]} vs {y})")
      self.sums[v] = self.sums.get(v, 0.0) + p
      self.views[v] = self.views.get(v, 0) + 1
      self.labels[v] = y

  def across_hosts(self) -> ViewAggregator:
    """The videos of every host, keyed `(host, video_index)`, on every host (a video's views
    all come from its own host's files); itself on one host."""
    if jax.process_count() == 1:
      return self
    from mgvm.sharding import gather_hosts

    order = sorted(self.sums)
    rows = gather_hosts(
      {
        "host": np.full(len(order), jax.process_index(), np.int32),
        "video": np.asarray(order, np.int32),
        "sums": np.asarray([self.sums[v] for v in order], np.float32).reshape(
          len(order), self.num_classes
        ),
        "views": np.asarray([self.views[v] for v in order], np.int32),
        "labels": np.asarray([self.labels[v] for v in order], np.int32),
      }
    )
    out = ViewAggregator(self.num_classes)
    for h, v, p, n, y in zip(*(rows[k] for k in ("host", "video", "sums", "views", "labels"))):
      key = (int(h), int(v))
      out.sums[key], out.views[key], out.labels[key] = p, int(n), int(y)
    return out

  def result(self, ks: Sequence[int] = (1, 5)) -> dict[str, float | int]:
    if not self.sums:
      raise ValueError("no evaluation examples were seen (is the split empty?)")
    order = sorted(self.sums)
    probs = np.stack([self.sums[v] / self.views[v] for v in order])
    labels = np.asarray([self.labels[v] for v in order])
    out = {f"top{k}": topk_accuracy(probs, labels, k) for k in ks if k <= self.num_classes}
    counts = set(self.views.values())
    out.update(
      num_videos=len(order),
      num_views=int(sum(self.views.values())),
      views_per_video=counts.pop() if len(counts) == 1 else -1,
      chance=1.0 / self.num_classes,
    )
    return out


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
  """Fraction of rows whose label is among the k highest scores (ties broken by class id)."""
  top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
  return float(np.mean(np.any(top == labels[:, None], axis=1)))


def predict_fn(graphdef: nnx.GraphDef, compressor=None, normalization: str = "imagenet"):
  """jit-compiled `(params, video, motion=None, motion_valid=None) -> softmax probabilities`
  (deterministic).

  With a `compressor` the encoder runs on its kept tokens (test-time token compression); one
  that `needs_motion` reads the clips' codec motion field (`motion`, `motion_valid`). uint8
  clips are normalised with `normalization`'s statistics (`config.data.normalization`).
  """
  return _predict_fn(graphdef, compressor, normalization, with_tokens=False)


def _predict_fn(graphdef, compressor, normalization: str, *, with_tokens: bool):
  """`predict_fn`; `with_tokens`: also the tokens the encoder kept per clip ([B] int32)."""
  from mgvm.train.steps import batch_motion, classify

  normalization_stats(normalization)

  @jax.jit
  def predict(params, video, motion=None, motion_valid=None):
    given = {"motion": motion, "motion_valid": motion_valid}
    motion, motion_valid = batch_motion({k: v for k, v in given.items() if v is not None})
    video = model_video({"video": video}, normalization=normalization)  # uint8 clips
    model = nnx.merge(graphdef, params)
    logits, aux = classify(
      model, video, compressor, motion=motion, motion_valid=motion_valid, deterministic=True
    )
    probs = jax.nn.softmax(logits, axis=-1)
    return (probs, aux["tokens"]) if with_tokens else probs

  return predict


def motion_inputs(batch: dict, masker) -> dict:
  """The codec motion arrays of an evaluation batch, for a masker / compressor that needs them."""
  if masker is None or not masker.needs_motion:
    return {}
  if "motion" not in batch:
    raise ValueError(
      f"masking kind {masker.kind!r} ({masker.params}) reads the codec motion field, but the "
      "evaluation batches carry no 'motion' (make_dataset(..., motion=True))"
    )
  return {k: batch[k] for k in ("motion", "motion_valid") if k in batch}


def evaluate(
  graphdef: nnx.GraphDef,
  params,
  batches: Iterable[dict],
  mesh,
  num_classes: int,
  ks: Sequence[int] = (1, 5),
  compressor=None,
  normalization: str = "imagenet",
) -> dict[str, float | int]:
  """Top-k accuracy of `params` over every view of every video in `batches` (eval-mode batches),
  of every host's videos when there are several. With a `variable_length` compressor (RLT's
  threshold form) the result also has `mean_tokens`, the tokens the encoder saw per view."""
  from mgvm.sharding import gather_hosts, host_rows, to_global

  variable = compressor is not None and compressor.variable_length
  predict = _predict_fn(graphdef, compressor, normalization, with_tokens=variable)
  agg = ViewAggregator(num_classes)
  tokens = np.zeros(2)  # kept tokens summed over this host's real views, views
  for batch in batches:
    inputs = to_global({"video": batch["video"], **motion_inputs(batch, compressor)}, mesh)
    out = predict(params, **inputs)
    probs, kept = out if variable else (out, None)
    mask = batch.get("mask")
    agg.add(host_rows(probs, mesh), batch["video_index"], batch["label"], mask)
    if variable:
      real = np.ones(len(batch["video"]), bool) if mask is None else np.asarray(mask, bool)
      tokens += [float(np.asarray(host_rows(kept, mesh))[real].sum()), int(real.sum())]
  result = agg.across_hosts().result(ks)
  if variable:
    total, views = gather_hosts({"tokens": tokens[None]})["tokens"].sum(0)
    result["mean_tokens"] = float(total / max(views, 1))
  return result
