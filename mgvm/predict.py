"""Top-k classes of video files from a classifier checkpoint: python -m mgvm.predict.

  python -m mgvm.predict VIDEO... --checkpoint CKPT [--top-k 5] [--labels FILE]
      [--clips K] [--crops C] [--fps F | --stride S] [--batch-size B] [--image-size S]
      [--num-frames T] [--num-heads H] [--json] [--no-progress]

`--checkpoint`: a classifier (an mgvm fine-tuning workdir, an official fine-tuned `.pth` or a
Hugging Face `VideoMAEForVideoClassification` folder); a pre-training checkpoint is refused.
`--image-size` / `--num-frames` run it on another clip (a `.pth` does not record its own: give
them for a model not trained on 16 x 224).
Each video is tested as eval.py tests it: K clips of the model's length on the video's
constant-rate frames (`mgvm.datasets.decode`), sampled at `--fps` per second or every
`--stride`-th frame (default: the checkpoint's training setting, else every 4th), evenly spread
(`mgvm.data.sampling.eval_indices_np`, dense sampling), times C spatial crops (short side to the
image size, crops along the long side, `mgvm.data.video_ops.spatial_crops`); the class
probabilities are the softmax of each view averaged over the K x C views. `--clips` / `--crops`
default to the workdir's `eval.num_clips` / `eval.num_crops`, else 5 x 3. Only the frames the
clips use are decoded.

Class names: `--labels FILE` (one per line, line k = class k; the count must match the head),
else the checkpoint's (a synthetic-data workdir's classes, a Hugging Face `id2label`), else
`class_<k>`. Prints per video its path and the top-k `label  probability` lines, or with
`--json` one JSON object (`videos`: path, top_k [{class, label, probability}], views; and the
skipped files). Unreadable videos are reported on stderr (counts by reason, then each) and
skipped; the exit status is 0 if any video was predicted, else 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

import numpy as np

from mgvm.cli import add_model_args, fail, quiet_startup
from mgvm.datasets import decode as dec
from mgvm.datasets import stream
from mgvm.features import (
  DEFAULT_BATCH_SIZE,
  DEFAULT_STRIDE,
  BatchRunner,
  add_sampling_args,
  check_positive,
  load,
  report_skips,
  sampling_settings,
  square_size,
)

DEFAULT_CLIPS, DEFAULT_CROPS = 5, 3


def _stderr(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def require_classifier(loaded, name: str) -> None:
  """ValueError naming `name` unless `loaded` is a classifier."""
  if loaded.kind != "classifier":
    what = "a pre-training (VideoMAE)" if loaded.kind == "pretrain" else f"a {loaded.kind}"
    raise ValueError(
      f"{name} is {what} checkpoint; predict needs a classifier (an mgvm fine-tuning workdir, "
      "an official fine-tuned .pth or a Hugging Face VideoMAEForVideoClassification folder)"
    )


def clip_views(plan: stream.FramePlan, num_frames: int, num_clips: int, convert) -> np.ndarray:
  """uint8 [num_clips · C, num_frames, S, S, 3]: the test views of a planned video, view =
  clip · C + crop; `convert` makes a frame's C crops (`stream.crop_views`). Decodes only the
  frames the clips use."""
  from mgvm.data import sampling

  indices = sampling.eval_indices_np(len(plan.grid), plan.stride, num_frames, num_clips)
  source = plan.grid[indices]  # [K, T] source frames
  frames = dict(stream.read_frames(plan, source.ravel(), convert))  # k -> [C, S, S, 3]
  clips = np.stack([frames[int(k)] for k in source.ravel()])  # [K·T, C, S, S, 3]
  clips = clips.reshape((num_clips, num_frames) + clips.shape[1:])
  clips = clips.transpose(0, 2, 1, 3, 4, 5)  # [K, C, T, S, S, 3]
  return clips.reshape((-1,) + clips.shape[2:])


def predict(
  loaded,
  paths: Sequence[str],
  *,
  fps: float | None = None,
  stride: int = DEFAULT_STRIDE,
  num_clips: int = DEFAULT_CLIPS,
  num_crops: int = DEFAULT_CROPS,
  batch_size: int = DEFAULT_BATCH_SIZE,
  progress: bool = True,
  mesh=None,
) -> tuple[list[dict], list[dict]]:
  """(results, skipped): per readable video, in order, `{"path", "probs" (float32 [classes],
  averaged over views), "views", "source_fps", "stride"}`; the skip records of the others."""
  from flax import nnx

  from mgvm.evaluate.classification import predict_fn

  require_classifier(loaded, loaded.source)
  size, frames = square_size(loaded), int(loaded.num_frames)
  graphdef, state = nnx.split(loaded.model)
  fn = predict_fn(graphdef, None, loaded.normalization)
  runner = BatchRunner(fn, state, (frames, size, size, 3), np.uint8, batch_size, mesh)
  convert = stream.crop_views(size, num_crops)
  views = num_clips * num_crops
  results: dict[int, dict] = {}
  skipped: list[dict] = []

  def store(done) -> None:
    for number, probs in done:
      r = results[number]
      r["sum"] = r["sum"] + probs.astype(np.float64)
      r["seen"] += 1

  bar = None
  if progress:
    import tqdm

    bar = tqdm.tqdm(total=len(paths), unit="video", desc="predict", file=sys.stderr)
  try:
    for number, path in enumerate(paths):
      try:
        try:
          plan = stream.plan(path, fps=fps, stride=stride)
          video = clip_views(plan, frames, num_clips, convert)
        except stream.PlanMismatch:  # packets are not the frames: plan from decoded frames
          plan = stream.plan(path, fps=fps, stride=stride, by_decoding=True)
          video = clip_views(plan, frames, num_clips, convert)
      except dec.DecodeError as e:
        skipped.append({"path": path, "reason": e.reason, "detail": e.detail})
      else:
        results[number] = {
          "path": path,
          "views": views,
          "source_fps": plan.source_fps,
          "stride": plan.stride,
          "sum": 0.0,
          "seen": 0,
        }
        for row in video:
          store(runner.add(row, number))
      if bar is not None:
        bar.update(1)
        if skipped:
          bar.set_postfix(skipped=len(skipped))
    store(runner.finish())
  finally:
    if bar is not None:
      bar.close()
  out = []
  for number in sorted(results):
    r = results.pop(number)
    assert r["seen"] == views, r
    out.append({**r, "probs": (r.pop("sum") / r.pop("seen")).astype(np.float32)})
  return out, skipped


def top_k(probs: np.ndarray, names: Sequence[str], k: int) -> list[dict]:
  """The k most probable classes (ties: the lower class first)."""
  order = np.argsort(-np.asarray(probs), kind="stable")[:k]
  return [{"class": int(c), "label": names[c], "probability": float(probs[c])} for c in order]


def main(argv: Sequence[str] | None = None, *, out: Callable = print) -> dict:
  p = argparse.ArgumentParser(
    prog="python -m mgvm.predict",
    description=__doc__.split("\n\n", 1)[1],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
  p.add_argument("--checkpoint", required=True, help="classifier: workdir, .pth or HF folder")
  p.add_argument("--top-k", type=int, default=5, help="classes shown per video")
  p.add_argument("--labels", default="", help="class names, one per line (line k = class k)")
  p.add_argument("--clips", type=int, default=None, help="temporal clips (default eval's, else 5)")
  p.add_argument("--crops", type=int, default=None, help="spatial crops (default eval's, else 3)")
  add_sampling_args(p)
  p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="views per batch")
  add_model_args(p)
  p.add_argument("--json", action="store_true", help="print one JSON object")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  a = p.parse_args(argv)
  check_positive(
    fps=a.fps,
    stride=a.stride,
    top_k=a.top_k,
    clips=a.clips,
    crops=a.crops,
    batch_size=a.batch_size,
    image_size=a.image_size,
    num_frames=a.num_frames,
    num_heads=a.num_heads,
  )
  quiet_startup()
  try:
    loaded = load(
      a.checkpoint, num_frames=a.num_frames, image_size=a.image_size, num_heads=a.num_heads
    )
    require_classifier(loaded, f"--checkpoint {a.checkpoint}")
    names = loaded.label_names(a.labels)
    clips = a.clips or loaded.sampling["num_clips"] or DEFAULT_CLIPS  # the run's test views
    crops = a.crops or loaded.sampling["num_crops"] or DEFAULT_CROPS
    sampling = sampling_settings(loaded, a.fps, a.stride)
    results, skipped = predict(
      loaded,
      a.videos,
      fps=sampling["fps"],
      stride=sampling["stride"],
      num_clips=int(clips),
      num_crops=int(crops),
      batch_size=a.batch_size,
      progress=not a.no_progress,
    )
  except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
    fail(str(e))
  report = {
    "checkpoint": loaded.source,
    "clips": int(clips),
    "crops": int(crops),
    "sampling": sampling,
    "videos": [
      {
        "path": r["path"],
        "top_k": top_k(r["probs"], names, a.top_k),
        "views": r["views"],
        "source_fps": r["source_fps"],
        "stride": r["stride"],
      }
      for r in results
    ],
    "skipped": len(skipped),
    "skipped_by_reason": dec.skip_counts(skipped),
    "skipped_files": skipped,
  }
  report_skips(_stderr, "predict", skipped)
  if a.json:
    out(json.dumps(report, indent=1))
  else:
    for video in report["videos"]:
      width = max(len(t["label"]) for t in video["top_k"])
      out(video["path"])
      for t in video["top_k"]:
        out(f"  {t['label']:<{width}}  {t['probability']:.4f}")
  if not results:
    fail(f"no video could be read ({len(skipped)} skipped)")
  return report


if __name__ == "__main__":
  main()
