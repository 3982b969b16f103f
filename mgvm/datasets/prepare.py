"""Video files → sharded TFRecord `SequenceExample`s (the on-disk format of `mgvm.data.format`).

  python -m mgvm.datasets.prepare --csv train.csv --root VIDEOS --out OUT [--split train]
      [--short-side 320] [--max-fps 30] [--workers K] [--videos-per-shard 64]
      [--boxes ava_train_v2.2.csv [--boxes-offset 0] [--label-map LIST.pbtxt]]
      [--boxes UCF101v2-GT.pkl --boxes-fps 25] [--classes classes.txt]
      [--motion-vectors [--motion-block 16] [--transcode auto|always|never]]

`--csv` is a VideoMAE-style list (`mgvm.datasets.video_list`). Each video is decoded with PyAV
onto a constant rate by timestamps (`mgvm.datasets.decode`), optionally resized (short side) and
capped in rate; `video/fps` is the rate actually stored. Unusable files are skipped, never
fatal: `OUT/<split>.summary.json` lists each with its line and reason, plus counts, and
`OUT/summary.json` gathers every split's. Shards are written atomically and a rerun skips the
finished ones (resumable); results do not depend on `--workers`. A progress bar (videos done,
per finished shard) goes to stderr.

What made the frames is recorded (`decoder_versions`: PyAV, the FFmpeg libraries it loads and
their build configuration, Pillow and its libjpeg) in each shard's info and, as `decoder` and
`decoders` (each distinct one with its shards), in both summaries: results move with the FFmpeg
build (AVA by ~3 mAP). A rerun that resumes shards, or adds a split, made by another decoder
logs a warning naming both.

The summaries record the labels written (`labels`: count per label, `max_label` and the video
holding it, `max_label_video`), which `mgvm.data.sources` reads to check `config.num_classes`.
`--classes FILE` (line k = name of label k) is stored as `classes`; a listed label outside it
stops prepare at once naming the line. Splits of one OUT must not differ in their classes.

`--boxes` attaches action-detection ground truth in the AVA CSV layout (`video_id, seconds, x1,
y1, x2, y2, action_id[, person_id]`, boxes normalised; `mgvm.datasets.annotations`): each
annotated second t goes to the stored frame `round((t − offset) · fps)` as `region/bbox` rows
(one per label; `mgvm.data.detection` merges them into multi-hot actions), so those frames
become the keyframes. `--boxes-offset` is the time of the video's first frame in the CSV's
clock (900 for AVA's 15-minute cuts that start at 900 s; 0 for the full movies). The video id
is the file's path under `--root` without extension. Annotations outside a video are counted
in the summary (`boxes_outside`). A `.pkl` is an ACT-detector ground truth (UCF101-24,
JHMDB): its 1-based frame number f is at `(f − 1) / --boxes-fps` seconds (the rate the
annotated frames were extracted at: 25 for UCF101, 30 for JHMDB).

`--motion-vectors` also stores the codec's motion field of the stored frames (`motion/*` in
`mgvm.data.format`; `mgvm.datasets.motion_vectors` defines it): `--motion-block` pixels per
cell, and `--transcode` says when a video is re-encoded to H.264 for it ("auto": only codecs
that export no vectors, "always", "never": such videos are skipped, reason
`no_motion_vectors`). The summaries then hold `motion_vectors` (settings, videos with a field,
transcoded videos, mean |vector| and share of valid blocks, stored frames per picture type) and
the decoder record names the libx264 build used to transcode. Without the flag nothing changes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import json
import os
import sys
import time
from typing import Sequence

from mgvm.datasets import decode as dec
from mgvm.datasets import motion_vectors as mvs
from mgvm.datasets import processes, shards, video_list

SHARD_INFO_DIR = ".shards"


def decoder_versions(motion: bool = False) -> dict:
  """What turns a video file into the stored JPEGs, as a JSON-able dict.

  `pyav` and `ffmpeg`: the PyAV and FFmpeg versions; `libraries`: the FFmpeg libraries PyAV
  loaded (libavcodec decodes, libswscale converts to RGB and resizes for `--short-side`) as
  "major.minor.micro"; `ffmpeg_configuration`: their build's configure line (same version,
  another build can decode differently); `pillow`, `libjpeg`: the JPEG encoder. With `motion`
  (`--motion-vectors`) also `transcoder`: PyAV, the libx264 build (`core N`, from the version
  line x264 writes into its stream) and the options of the H.264 re-encode.
  """
  import importlib

  import av
  import PIL
  from PIL import features

  info = {
    "pyav": str(av.__version__),
    "ffmpeg": str(getattr(av, "ffmpeg_version_info", None) or "unknown"),
    "libraries": {name: ".".join(map(str, v)) for name, v in sorted(av.library_versions.items())},
  }
  try:  # not public API: recorded when this PyAV has it
    meta = importlib.import_module("av._core").library_meta
    info["ffmpeg_configuration"] = str(meta["libavcodec"]["configuration"])
  except (ImportError, AttributeError, KeyError, TypeError):
    pass
  info.update(pillow=str(PIL.__version__), libjpeg=str(features.version("jpg") or "unknown"))
  if motion:
    info["transcoder"] = mvs.transcoder_versions()
  return info


def describe_decoder(decoder: dict | None) -> str:
  """One line naming a `decoder_versions` dict (None: shards written before it was recorded)."""
  if not decoder:
    return "an unrecorded decoder (written before prepare recorded it)"
  line = (
    f"PyAV {decoder.get('pyav')}, FFmpeg {decoder.get('ffmpeg')} (libavcodec "
    f"{decoder.get('libraries', {}).get('libavcodec')}), Pillow {decoder.get('pillow')} "
    f"(libjpeg {decoder.get('libjpeg')})"
  )
  if decoder.get("transcoder"):
    line += f", libx264 {decoder['transcoder'].get('libx264')}"
  return line


def _decoder_differences(old: dict | None, new: dict | None) -> list[str]:
  """`key: old -> new` for each recorded version that differs (the configure line by name)."""

  def flat(d):
    d = dict(d or {})
    coder = d.get("transcoder") or {}
    return {
      **{k: v for k, v in d.items() if k not in ("libraries", "transcoder")},
      **d.get("libraries", {}),
      **{f"transcoder {k}": v for k, v in coder.items()},
    }

  a, b = flat(old), flat(new)
  return [
    f"{k}: differs" if k == "ffmpeg_configuration" else f"{k}: {a.get(k)} -> {b.get(k)}"
    for k in sorted(set(a) | set(b), key=lambda k: (k == "ffmpeg_configuration", k))
    if a.get(k) != b.get(k)
  ]


def _same_decoder(a: dict | None, b: dict | None) -> bool:
  """Equal records; the transcoder counts only when both have one (a split prepared without
  `--motion-vectors` decoded its frames with the same decoder)."""
  if a and b and not (a.get("transcoder") and b.get("transcoder")):
    a = {k: v for k, v in a.items() if k != "transcoder"}
    b = {k: v for k, v in b.items() if k != "transcoder"}
  return a == b


def _group_decoders(pairs) -> list[dict]:
  """[{"decoder": d, "shards": [...]}] for each distinct decoder of (shard, decoder) pairs."""
  groups: list[dict] = []
  for shard, decoder in pairs:
    group = next((g for g in groups if g["decoder"] == decoder), None)
    if group is None:
      group = {"decoder": decoder, "shards": []}
      groups.append(group)
    group["shards"].append(shard)
  return groups


def _summary_decoders(summary: dict) -> list[dict]:
  """A split summary's `decoders` (one unrecorded group for summaries written before them)."""
  if "decoders" in summary:
    return summary["decoders"]
  return [{"decoder": None, "shards": list(summary.get("shards", []))}]


def _warn_mixed_decoders(log, out: str, split: str, current: dict, done, others) -> None:
  """Warns when resumed shards of `split`, or other splits of `out`, had another decoder."""
  recorded = _group_decoders([(r["shard"], r.get("decoder")) for r in done])
  for name, summary in sorted(others.items()):
    recorded += [{**g, "split": name} for g in _summary_decoders(summary)]
  for group in recorded:
    if _same_decoder(group["decoder"], current):
      continue
    where = (
      f"split {group['split']} of {out} was"
      if "split" in group
      else f"{len(group['shards'])} already written shard(s) of {split} ({group['shards'][0]}, "
      "...) were"
    )
    log(
      f"prepare: WARNING: {where} made with {describe_decoder(group['decoder'])}; this run "
      f"decodes with {describe_decoder(current)} ("
      + (
        "; ".join(_decoder_differences(group["decoder"], current))
        if group["decoder"]
        else "versions not recorded"
      )
      + "). The data set would mix decoders, and results move with the FFmpeg build (AVA by ~3 "
      "mAP): prepare into an empty --out to decode every video with one."
    )


def _video_id(entry: video_list.Entry, root: str) -> str:
  rel = os.path.relpath(entry.path, root) if root else entry.path
  return os.path.splitext(rel)[0].replace(os.sep, "/")


def boxes_by_video(
  annotations, offset: float = 0.0, frame_fps: float | None = None
) -> dict[str, list[tuple]]:
  """{video: [(seconds, box_xyxy tuple, labels tuple)]} from `DetectionAnnotations` keyed by
  (video, second) (AVA; `offset` subtracted) or, with `frame_fps`, by (video, 1-based frame)."""
  out: dict[str, list[tuple]] = {}
  for (video, when), people in sorted(annotations.frames.items()):
    seconds = (when - 1) / frame_fps if frame_fps else float(when) - offset
    for a in people:
      out.setdefault(video, []).append(
        (seconds, tuple(float(v) for v in a.box_xyxy), tuple(a.labels))
      )
  return out


def read_boxes(
  path: str, *, offset: float = 0.0, frame_fps: float | None = None, label_map: str = ""
) -> dict[str, list[tuple]]:
  """`boxes_by_video` of an AVA CSV or (`.pkl`, needs `frame_fps`) an ACT pickle."""
  from mgvm.datasets import annotations as da

  if path.endswith(".pkl"):
    if not frame_fps or frame_fps <= 0:
      raise ValueError(
        f"{path}: an ACT pickle numbers frames; give --boxes-fps (the rate they "
        f"were extracted at, e.g. 25 for UCF101-24, 30 for JHMDB)"
      )
    return boxes_by_video(da.read_act_pickle(path, normalize=True), frame_fps=frame_fps)
  names = da.read_label_map(label_map) if label_map else None
  return boxes_by_video(da.read_ava(path, label_map=names), offset)


def frame_annotations(boxes: list[tuple], fps: float, num_frames: int):
  """(per-frame region/bbox rows, per-frame labels, outside count) for one decoded video."""
  import numpy as np

  rows = [[] for _ in range(num_frames)]
  labels = [[] for _ in range(num_frames)]
  outside = 0
  for seconds, box, actions in boxes:
    k = int(np.floor(seconds * fps + 0.5))
    if not 0 <= k < num_frames:
      outside += 1
      continue
    for action in actions:
      rows[k].extend(box)
      labels[k].append(action)
  return (
    [np.asarray(r, np.float32) for r in rows],
    [np.asarray(v, np.int64) for v in labels],
    outside,
  )


def _write_shard(task) -> dict:
  """Decodes and writes one shard; returns its stats (also stored next to the shard)."""
  from mgvm.data import format as fmt

  out, split, shard, num_shards, entries, root, short_side, max_fps, quality, boxes, motion = task
  name = shards.shard_name(split, shard, num_shards)
  written, skipped, frames, outside, annotated = [], [], 0, 0, 0
  settings = mvs.MotionSettings(**motion) if motion else None
  motion_stats = _empty_motion_stats() if motion else None
  with shards.write_shard(out, name) as writer:
    for entry in entries:
      video = dec.decode_or_skip(
        entry.path, short_side=short_side, max_fps=max_fps, jpeg_quality=quality, motion=settings
      )
      if isinstance(video, dict):
        skipped.append({"line": entry.line, **video})
        continue
      video_id = _video_id(entry, root)
      extra = None
      if boxes is not None:
        rows, labels, missed = frame_annotations(
          boxes.get(video_id, []), video.fps, len(video.frames)
        )
        outside += missed
        annotated += sum(len(r) > 0 for r in rows)
        extra = {fmt.REGION_BBOX: rows, fmt.REGION_LABEL: labels}
      writer.write(
        fmt.encode_example(
          video_id=video_id,
          fps=video.fps,
          jpeg_frames=video.frames,
          height=video.height,
          width=video.width,
          label=-1 if entry.label is None else entry.label,
          annotations=extra,
          motion=None if settings is None else video.motion.as_format(),
        )
      )
      written.append(entry.line)
      frames += len(video.frames)
      if settings is not None:
        _add_motion_stats(motion_stats, video.motion)
  stats = {
    "shard": name,
    "written": written,
    "skipped": skipped,
    "frames": frames,
    "annotated_frames": annotated,
    "boxes_outside": outside,
    "decoder": decoder_versions(motion=bool(motion)),
  }
  if motion:
    stats.update(motion=motion, motion_stats=motion_stats)
  shards.write_json(os.path.join(out, SHARD_INFO_DIR, f"{name}.json"), stats, indent=None)
  return stats


def _empty_motion_stats() -> dict:
  return {
    "videos": 0,
    "transcoded": 0,
    "blocks": 0,
    "valid_blocks": 0,
    "abs_sum_px": 0.0,
    "frame_types": {"I": 0, "P": 0, "B": 0, "other": 0},
  }


def _add_motion_stats(total: dict, field: mvs.Field) -> None:
  one = mvs.magnitude_stats(field)
  total["videos"] += 1
  total["transcoded"] += int(field.transcoded)
  for key in ("blocks", "valid_blocks", "abs_sum_px"):
    total[key] += one[key]
  for key, count in one["frame_types"].items():
    total["frame_types"][key] += count


def _motion_summary(motion: dict, results: list[dict]) -> dict:
  """The split summary's `motion_vectors`: settings and the shards' statistics combined."""
  total = _empty_motion_stats()
  for r in results:
    one = r["motion_stats"]
    for key in ("videos", "transcoded", "blocks", "valid_blocks", "abs_sum_px"):
      total[key] += one[key]
    for key, count in one["frame_types"].items():
      total["frame_types"][key] += count
  valid = total["valid_blocks"]
  return {
    **motion,
    "videos": total["videos"],
    "transcoded": total["transcoded"],
    "mean_abs_px": total["abs_sum_px"] / valid if valid else None,
    "valid_share": valid / total["blocks"] if total["blocks"] else None,
    "frame_types": total["frame_types"],
  }


def _split_summaries(out: str) -> dict[str, dict]:
  splits = {}
  for path in sorted(glob.glob(os.path.join(out, "*.summary.json"))):
    with open(path) as f:
      summary = json.load(f)
    splits[summary["split"]] = summary
  return splits


def _common_classes(out: str, splits: dict[str, dict]) -> list[str] | None:
  """The class list the splits give (None without one); differing lists are an error."""
  given = {name: s["classes"] for name, s in splits.items() if s.get("classes")}
  lists = {tuple(c) for c in given.values()}
  if len(lists) > 1:
    raise ValueError(
      f"{out}: the splits differ in their classes ("
      + "; ".join(f"{n}: {len(c)} classes, {c[:3]}..." for n, c in sorted(given.items()))
      + "): prepare every split of one data set with the same --classes, or use another --out"
    )
  return list(lists.pop()) if lists else None


def _label_stats(entries: list[video_list.Entry], written: set[int], root: str) -> dict:
  """`labels` (count per label), `max_label` and `max_label_video` of the written entries."""
  labelled = [e for e in entries if e.line in written and e.label is not None]
  counts = collections.Counter(e.label for e in labelled)
  top = max(labelled, key=lambda e: (e.label, -e.line), default=None)
  return {
    "max_label": None if top is None else top.label,
    "max_label_video": None
    if top is None
    else {"line": top.line, "path": top.path, "id": _video_id(top, root)},
    "labels": {str(k): counts[k] for k in sorted(counts)},
  }


def _gather_summaries(out: str) -> dict:
  """`OUT/summary.json`: every split's summary plus totals, the largest label and the classes."""
  splits = _split_summaries(out)
  totals = {
    key: sum(s[key] for s in splits.values()) for key in ("listed", "written", "skipped", "frames")
  }
  classes = _common_classes(out, splits)
  decoders = _group_decoders(
    (shard, g["decoder"])
    for s in splits.values()
    for g in _summary_decoders(s)
    for shard in g["shards"]
  )
  labelled = [(n, s) for n, s in splits.items() if s.get("max_label") is not None]
  top = max(labelled, key=lambda ns: ns[1]["max_label"], default=None)
  gathered = {
    **totals,
    "max_label": None if top is None else top[1]["max_label"],
    "max_label_video": None
    if top is None
    else {"split": top[0], "csv": top[1]["csv"], **top[1]["max_label_video"]},
    **({"classes": classes} if classes else {}),
    "decoder": decoders[0]["decoder"] if len(decoders) == 1 else None,
    "decoders": decoders,
    "splits": splits,
  }
  shards.write_json(os.path.join(out, "summary.json"), gathered)
  return gathered


def prepare(
  csv: str,
  out: str,
  *,
  root: str = "",
  split: str | None = None,
  short_side: int | None = None,
  max_fps: float | None = None,
  workers: int = 1,
  videos_per_shard: int = 64,
  jpeg_quality: int = 90,
  log=print,
  progress: bool = False,
  boxes: str = "",
  boxes_offset: float = 0.0,
  boxes_fps: float | None = None,
  label_map: str = "",
  classes: str = "",
  motion_vectors: bool = False,
  motion_block: int = 16,
  transcode: str = "auto",
) -> dict:
  """Writes `out/<split>-*.tfrecord`, `out/<split>.summary.json` and `out/summary.json`.

  Returns the split's summary. `progress` shows a tqdm bar of videos done on stderr. `boxes`:
  an AVA-layout CSV of detection ground truth to store with the frames (module docstring).
  `classes`: a file of class names (line k = label k); every listed label must be one.
  `motion_vectors`: also store the codec motion field (`motion_block` px cells, `transcode`
  "auto" / "always" / "never"; `mgvm.datasets.motion_vectors`).
  """
  motion = None
  if motion_vectors:
    settings = mvs.MotionSettings(block=motion_block, transcode=transcode)  # checks them
    motion = {"block": settings.block, "transcode": settings.transcode}
  if videos_per_shard < 1:
    raise ValueError(f"videos_per_shard must be >= 1, got {videos_per_shard}")
  if max_fps is not None and not max_fps > 0:
    raise ValueError(f"max_fps must be > 0, got {max_fps}")
  split = split or os.path.splitext(os.path.basename(csv))[0]
  entries = video_list.read_list(csv, root)
  if not entries:
    raise ValueError(f"{csv}: no videos listed")
  names = video_list.read_classes(classes) if classes else None
  if names is not None:
    for e in entries:
      if e.label is not None and e.label >= len(names):
        raise ValueError(
          f"{csv}:{e.line}: {e.path}: label {e.label} is not a class of {classes} "
          f"({len(names)} classes, labels 0..{len(names) - 1})"
        )
    others = {n: summary for n, summary in _split_summaries(out).items() if n != split}
    _common_classes(out, {**others, split: {"classes": names}})  # before decoding anything
  by_video = None
  if boxes:
    by_video = read_boxes(boxes, offset=boxes_offset, frame_fps=boxes_fps, label_map=label_map)
    unknown = sorted({_video_id(e, root) for e in entries} - set(by_video))
    log(
      f"prepare: {boxes}: boxes for {len(by_video)} videos; {len(unknown)} listed videos have none"
    )
  os.makedirs(os.path.join(out, SHARD_INFO_DIR), exist_ok=True)
  shards.remove_partial(out, split)  # left by an interrupted run of this split
  num_shards = -(-len(entries) // videos_per_shard)
  tasks, done = [], []
  for shard in range(num_shards):
    name = shards.shard_name(split, shard, num_shards)
    info = os.path.join(out, SHARD_INFO_DIR, f"{name}.json")
    if os.path.exists(info) and os.path.exists(os.path.join(out, name)):
      with open(info) as f:
        stats = json.load(f)
      if stats.get("motion") == motion:  # a shard with another motion setting is rewritten
        done.append(stats)
        continue
    chunk = entries[shard * videos_per_shard : (shard + 1) * videos_per_shard]
    chunk_boxes = (
      None
      if by_video is None
      else {v: by_video[v] for v in (_video_id(e, root) for e in chunk) if v in by_video}
    )
    tasks.append(
      (
        out,
        split,
        shard,
        num_shards,
        chunk,
        root,
        short_side,
        max_fps,
        jpeg_quality,
        chunk_boxes,
        motion,
      )
    )
  if done:
    log(f"prepare: {len(done)} of {num_shards} shards already written, resuming")
  current = decoder_versions(motion=bool(motion))
  others = {n: summary for n, summary in _split_summaries(out).items() if n != split}
  _warn_mixed_decoders(log, out, split, current, done, others)
  start = time.time()
  results = list(done)
  with contextlib.ExitStack() as stack:
    bar = None
    if progress:
      import tqdm

      bar = stack.enter_context(
        tqdm.tqdm(
          total=len(entries),
          initial=sum(len(r["written"]) + len(r["skipped"]) for r in done),
          unit="video",
          desc=f"prepare {split}",
          file=sys.stderr,
        )
      )
    if workers > 1 and len(tasks) > 1:
      written = stack.enter_context(processes.pool(min(workers, len(tasks)))).imap_unordered(
        _write_shard, tasks
      )
    else:
      written = map(_write_shard, tasks)
    for i, stats in enumerate(written, 1):
      results.append(stats)
      if bar is not None:
        bar.update(len(stats["written"]) + len(stats["skipped"]))
        bar.set_postfix(skipped=sum(len(r["skipped"]) for r in results))
      else:
        log(f"prepare: shard {i}/{len(tasks)} ({stats['shard']})")
  results.sort(key=lambda s: s["shard"])
  names_now = {r["shard"] for r in results}
  # Shards of an earlier run with another --videos-per-shard would be read as more videos.
  shards.remove_stale(out, split, names_now, sidecar_dirs=(SHARD_INFO_DIR,))
  skipped = sorted((s for r in results for s in r["skipped"]), key=lambda s: s["line"])
  summary = {
    "csv": os.path.abspath(csv),
    "split": split,
    "listed": len(entries),
    "written": sum(len(r["written"]) for r in results),
    "skipped": len(skipped),
    "skipped_by_reason": dec.skip_counts(skipped),
    "frames": sum(r["frames"] for r in results),
    "shards": [r["shard"] for r in results],
    "short_side": short_side,
    "max_fps": max_fps,
    "decoder": None,  # set below: the one decoder of every shard, None if they differ
    "decoders": _group_decoders((r["shard"], r.get("decoder")) for r in results),
    **_label_stats(entries, {line for r in results for line in r["written"]}, root),
    **({"classes": names} if names is not None else {}),
    "skipped_files": skipped,
  }
  if len(summary["decoders"]) == 1:
    summary["decoder"] = summary["decoders"][0]["decoder"]
  if motion:
    summary["motion_vectors"] = _motion_summary(motion, results)
  if boxes:
    summary.update(
      boxes=os.path.abspath(boxes),
      boxes_offset=boxes_offset,
      annotated_frames=sum(r.get("annotated_frames", 0) for r in results),
      boxes_outside=sum(r.get("boxes_outside", 0) for r in results),
    )
  path = os.path.join(out, f"{split}.summary.json")
  shards.write_json(path, summary)
  _gather_summaries(out)
  log(
    f"prepare: {summary['written']} of {len(entries)} videos written, {len(skipped)} skipped "
    f"{summary['skipped_by_reason']}, {summary['frames']} frames in "
    f"{time.time() - start:.1f} s with {describe_decoder(current)}; summary {path}"
  )
  return summary


def main(argv: Sequence[str] | None = None) -> dict:
  p = argparse.ArgumentParser(
    prog="python -m mgvm.datasets.prepare", description=__doc__.split("\n")[0]
  )
  p.add_argument("--csv", required=True, help="video list: 'path label' per line")
  p.add_argument("--root", default="", help="directory the list's relative paths start from")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--split", default=None, help="shard name prefix (default: the list's stem)")
  p.add_argument("--short-side", type=int, default=None, help="resize so the short side is N px")
  p.add_argument("--max-fps", type=float, default=None, help="cap the stored frame rate")
  p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)))
  p.add_argument("--videos-per-shard", type=int, default=64)
  p.add_argument("--jpeg-quality", type=int, default=90)
  p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines instead)")
  p.add_argument("--boxes", default="", help="detection ground truth, AVA CSV layout")
  p.add_argument(
    "--boxes-offset",
    type=float,
    default=0.0,
    help="seconds of the video's first frame in the CSV's clock (AVA cuts: 900)",
  )
  p.add_argument(
    "--boxes-fps",
    type=float,
    default=None,
    help="with an ACT .pkl: frame rate of its frame numbers (UCF101 25, JHMDB 30)",
  )
  p.add_argument("--label-map", default="", help="pbtxt label map: actions outside are skipped")
  p.add_argument(
    "--classes", default="", help="class names, one per line (line k = label k), stored and checked"
  )
  p.add_argument(
    "--motion-vectors",
    action="store_true",
    help="also store the codec's motion vectors on a block grid (docs/data.md)",
  )
  p.add_argument("--motion-block", type=int, default=16, help="motion grid cell side, stored px")
  p.add_argument(
    "--transcode",
    choices=mvs.TRANSCODE_MODES,
    default="auto",
    help="re-encode to H.264 for motion vectors: auto (codecs without them), always, never (skip)",
  )
  a = p.parse_args(argv)
  try:
    return prepare(
      a.csv,
      a.out,
      root=a.root,
      split=a.split,
      short_side=a.short_side,
      max_fps=a.max_fps,
      workers=a.workers,
      videos_per_shard=a.videos_per_shard,
      jpeg_quality=a.jpeg_quality,
      progress=not a.no_progress,
      boxes=a.boxes,
      boxes_offset=a.boxes_offset,
      boxes_fps=a.boxes_fps,
      label_map=a.label_map,
      classes=a.classes,
      motion_vectors=a.motion_vectors,
      motion_block=a.motion_block,
      transcode=a.transcode,
    )
  except (video_list.VideoListError, ValueError, FileNotFoundError) as e:
    sys.exit(f"prepare: {e}")


if __name__ == "__main__":
  main()
