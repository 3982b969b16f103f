"""What is in a prepared data set, and which frames the model will be shown.

  python -m mgvm.datasets.inspect OUT [--split S] [--num-frames T] [--target-fps F]
      [--frame-stride N] [--temporal dense|segment] [--clips K] [--json]

Reads only the records' context (no frame is decoded): counts, frame-rate / length histograms
and label counts per split. With `--json` it prints instead one object per video,
`{"split", "id", "fps", "num_frames", "label", "clips"}`, where `clips` lists the source frame
indices of each of the K evaluation clips the pipeline would take (`mgvm.data.sampling`), so a
user can check what the model sees at a given rate.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import sys
from typing import Sequence

import numpy as np

from mgvm.data import sampling


def split_files(root: str) -> dict[str, list[str]]:
  """{split: shard paths} of `root/<split>-*.tfrecord*` (the prepare / synthetic layout)."""
  files: dict[str, list[str]] = {}
  for path in sorted(glob.glob(os.path.join(root, "*.tfrecord*"))):
    files.setdefault(os.path.basename(path).split("-", 1)[0], []).append(path)
  return files


def read_context(files: Sequence[str]) -> list[dict]:
  """id, fps, num_frames, height, width, label of every record, in file order."""
  import tensorflow as tf

  spec = {
    "video/id": tf.io.FixedLenFeature([], tf.string),
    "video/fps": tf.io.FixedLenFeature([], tf.float32),
    "video/num_frames": tf.io.FixedLenFeature([], tf.int64),
    "video/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "video/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "clip/label/index": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
  }
  ds = tf.data.TFRecordDataset(list(files)).map(
    lambda s: tf.io.parse_single_sequence_example(s, spec)[0]
  )
  return [
    {
      "id": r["video/id"].decode(),
      "fps": float(r["video/fps"]),
      "num_frames": int(r["video/num_frames"]),
      "height": int(r["video/height"]),
      "width": int(r["video/width"]),
      "label": int(r["clip/label/index"]),
    }
    for r in ds.as_numpy_iterator()
  ]


def eval_clips(
  fps: float,
  num_frames: int,
  *,
  num_out: int,
  target_fps: float | None,
  frame_stride: int,
  temporal: str,
  clips: int,
) -> list[list[int]]:
  """The source indices of the `clips` evaluation clips, as the pipeline's eval mode takes them."""
  if temporal == "segment":
    return sampling.segment_eval_indices_np(num_frames, num_out, clips).tolist()
  stride = sampling.stride_for_np(fps, target_fps, frame_stride)
  return sampling.eval_indices_np(num_frames, stride, num_out, clips).tolist()


def _histogram(values: Sequence[float], bins: int = 8, width: int = 30) -> list[str]:
  values = np.asarray(values, np.float64)
  if values.min() == values.max():
    return [f"  {values[0]:10.3g}            {len(values):6d}  {'#' * width}"]
  counts, edges = np.histogram(values, bins=bins)
  top = counts.max()
  return [
    f"  [{lo:9.3g}, {hi:9.3g})  {c:6d}  {'#' * int(round(width * c / top))}"
    for lo, hi, c in zip(edges[:-1], edges[1:], counts)
  ]


def _class_names(root: str) -> list[str]:
  info = os.path.join(root, "dataset_info.json")
  if os.path.exists(info):
    with open(info) as f:
      return list(json.load(f).get("classes", ()))
  return []


def summarise(split: str, records: list[dict], class_names: Sequence[str] = ()) -> str:
  """A human-readable summary of one split."""
  if not records:
    return f"{split}: no videos"
  fps = [r["fps"] for r in records]
  frames = [r["num_frames"] for r in records]
  seconds = [n / f for n, f in zip(frames, fps)]
  labels = collections.Counter(r["label"] for r in records)
  lines = [
    f"{split}: {len(records)} videos, {sum(frames)} frames, "
    f"{sum(seconds) / 3600:.3g} h; {len(labels)} labels",
    "frame rate (fps):",
  ]
  rates = collections.Counter(round(f, 3) for f in fps)
  lines += [f"  {rate:10.3f}  {count:6d}" for rate, count in sorted(rates.most_common(10))]
  if len(rates) > 10:
    lines.append(f"  ... {len(rates) - 10} more rates")
  lines += [
    "length (frames):",
    *_histogram(frames),
    "length (seconds):",
    *_histogram(seconds),
    "labels (count):",
  ]
  for label, count in sorted(labels.items()):
    name = class_names[label] if 0 <= label < len(class_names) else ""
    lines.append(
      f"  {label:6d} {name:24s} {count:6d}"
      if label >= 0
      else f"  {'-1':>6s} {'(unlabelled)':24s} {count:6d}"
    )
  sizes = collections.Counter((r["height"], r["width"]) for r in records)
  lines.append(
    "frame sizes (h x w): " + ", ".join(f"{h}x{w}: {c}" for (h, w), c in sizes.most_common(5))
  )
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict] | None:
  p = argparse.ArgumentParser(
    prog="python -m mgvm.datasets.inspect", description=__doc__.split("\n")[0]
  )
  p.add_argument("root", help="a prepared data set directory (OUT of mgvm.datasets.prepare)")
  p.add_argument("--split", default=None, help="one split (default: all)")
  p.add_argument("--num-frames", type=int, default=16, help="frames per clip")
  p.add_argument(
    "--target-fps", type=float, default=0.0, help="clip rate; 0 = every --frame-stride-th frame"
  )
  p.add_argument("--frame-stride", type=int, default=4)
  p.add_argument("--temporal", choices=("dense", "segment"), default="dense")
  p.add_argument("--clips", type=int, default=1, help="evaluation clips per video")
  p.add_argument("--json", action="store_true", help="print one JSON object per video")
  a = p.parse_args(argv)
  files = split_files(a.root)
  if not files:
    sys.exit(f"inspect: no *.tfrecord files in {a.root!r}")
  if a.split is not None and a.split not in files:
    sys.exit(f"inspect: no split {a.split!r} in {a.root!r} (found: {sorted(files)})")
  try:
    sampling.stride_for_np(1.0, a.target_fps or None, a.frame_stride)
    sampling.segment_eval_indices_np(1, a.num_frames, a.clips)
  except ValueError as e:
    sys.exit(f"inspect: {e}")
  splits = [a.split] if a.split else sorted(files)
  if not a.json:
    names = _class_names(a.root)
    print("\n\n".join(summarise(s, read_context(files[s]), names) for s in splits))
    return None
  rows = []
  for split in splits:
    for r in read_context(files[split]):
      rows.append(
        {
          "split": split,
          "id": r["id"],
          "fps": r["fps"],
          "num_frames": r["num_frames"],
          "label": r["label"],
          "clips": eval_clips(
            r["fps"],
            r["num_frames"],
            num_out=a.num_frames,
            target_fps=a.target_fps or None,
            frame_stride=a.frame_stride,
            temporal=a.temporal,
            clips=a.clips,
          ),
        }
      )
  json.dump(rows, sys.stdout, indent=None)
  print()
  return rows


if __name__ == "__main__":
  main()
