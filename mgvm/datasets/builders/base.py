"""What every video builder shares: configs, features, decoding with skips, the skip report.

Each builder (one module each) implements `_read_splits(root) -> (splits, class_names)` from the
files the user already has in `manual_dir`; this module decodes every listed video with
`mgvm.datasets.decode` (PyAV, constant rate by timestamps, `short_side` / `max_fps` from the
config), stores per-frame JPEG, and skips unusable files with a report (docs/data.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from typing import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from mgvm.datasets import decode as dec
from mgvm.datasets import processes
from mgvm.datasets.video_list import VideoListError

log = logging.getLogger("mgvm.datasets.builders")

UNLABELLED = -1
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi")  # preference order when a stem has several
SKIP_REPORT = "{split}.skipped.json"
_WARN_EACH = 20  # per split, files named one by one in the log; the rest only in the report


class ManualDirError(VideoListError):
  """A malformed or inconsistent file in `manual_dir` (the message names FILE:LINE)."""


# ------------------------------------------------------------------------------ configs


@dataclasses.dataclass(eq=False)
class MgvmVideoConfig(tfds.core.BuilderConfig):
  """How videos are stored: resize, rate cap, JPEG quality; `split_number` for UCF101 / HMDB51."""

  short_side: int | None = 320  # resize so the short side is this many px (None: keep)
  max_fps: float | None = None  # cap the stored rate (None: the source rate)
  jpeg_quality: int = 90
  split_number: int = 1  # the official split (UCF101 / HMDB51 only)


def make_config(
  name: str,
  *,
  short_side: int | None = 320,
  max_fps: float | None = None,
  jpeg_quality: int = 90,
  split_number: int = 1,
  description: str | None = None,
) -> MgvmVideoConfig:
  """A builder config named `name` (it names the data directory: keep names unique)."""
  if short_side is not None and short_side < 1:
    raise ValueError(f"short_side must be >= 1 or None, got {short_side}")
  if max_fps is not None and not max_fps > 0:
    raise ValueError(f"max_fps must be > 0 or None, got {max_fps}")
  if split_number not in (1, 2, 3):
    raise ValueError(f"split_number must be 1, 2 or 3, got {split_number}")
  return MgvmVideoConfig(
    name=name,
    description=description
    or (f"short side {short_side or 'kept'}, rate {f'<= {max_fps}' if max_fps else 'kept'}"),
    short_side=short_side,
    max_fps=max_fps,
    jpeg_quality=jpeg_quality,
    split_number=split_number,
  )


def split_configs() -> list[MgvmVideoConfig]:
  return [
    make_config(
      f"split{n}", split_number=n, description=f"official split {n}; short side 320, source rate"
    )
    for n in (1, 2, 3)
  ]


# ------------------------------------------------------------------------------ helpers


@dataclasses.dataclass(frozen=True)
class Item:
  """One listed video."""

  video_id: str
  path: str
  label: int  # UNLABELLED (-1) when the split has no labels
  where: str  # FILE:LINE (or FILE entry N) that listed it


def read_lines(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return f.read().splitlines()


def _decode_task(task) -> dec.Decoded | dict:
  """Worker: `decode.decode_or_skip` of one (path, short_side, max_fps, jpeg_quality)."""
  path, short_side, max_fps, quality = task
  return dec.decode_or_skip(path, short_side=short_side, max_fps=max_fps, jpeg_quality=quality)


def _features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict(
    {
      "id": tfds.features.Text(),
      "frames": tfds.features.Sequence(
        tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")
      ),
      "fps": tfds.features.Scalar(np.float32, doc="rate of the stored frames (constant)"),
      "num_frames": tfds.features.Scalar(np.int64),
      "height": tfds.features.Scalar(np.int64, doc="stored frame height (px)"),
      "width": tfds.features.Scalar(np.int64, doc="stored frame width (px)"),
      "label": tfds.features.Scalar(
        np.int64, doc="index into info.metadata['class_names']; -1 when unlabelled"
      ),
    }
  )


class VideoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared machinery: subclasses implement `_read_splits(root) -> (splits, class_names)`."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [make_config("default", description="short side 320, source rate")]

  def __init__(self, *, workers: int = 1, **kwargs):
    """`workers` > 1 decodes in that many processes (the stored bytes do not depend on it)."""
    if workers < 1:
      raise ValueError(f"workers must be >= 1, got {workers}")
    self._workers = workers
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=_features(), supervised_keys=("frames", "label"), metadata=tfds.core.MetadataDict()
    )

  def download_and_prepare(self, *, download_config=None, **kwargs):
    """As tfds's, but never looks for a prepared copy on GCS (these data sets are not there)."""
    config = download_config or tfds.download.DownloadConfig()
    if config.try_download_gcs:
      config = dataclasses.replace(config, try_download_gcs=False)
    self._final_data_path = self.data_path  # tfds writes into a temporary folder, then renames
    return super().download_and_prepare(download_config=config, **kwargs)

  # -- subclass API
  def _read_splits(self, root: str) -> tuple[dict[str, list[Item]], list[str]]:
    raise NotImplementedError

  # -- tfds API
  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    splits, class_names = self._read_splits(root)
    cfg = self.builder_config
    meta = self.info.metadata
    meta.update(
      class_names=list(class_names),
      unlabelled_label=UNLABELLED,
      short_side=cfg.short_side,
      max_fps=cfg.max_fps,
      counts={},
      omitted_splits={},
    )
    generators = {}
    for split, items in splits.items():
      if not items:
        meta["omitted_splits"][split] = "no videos listed"
        log.warning("%s: split %r lists no videos; left out", self.name, split)
      elif not any(os.path.isfile(item.path) for item in items):
        meta["omitted_splits"][split] = f"none of the {len(items)} listed videos exists"
        log.warning(
          "%s: none of the %d videos listed for split %r exists (e.g. %s); split left out",
          self.name,
          len(items),
          split,
          items[0].path,
        )
      else:
        generators[split] = self._generate_examples(split, items)
    if not generators:
      raise ManualDirError(
        f"{self.name}: no split has any video under {root} "
        f"({meta['omitted_splits']})\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    return generators

  def _decoded(self, items: Sequence[Item]) -> Iterator[tuple]:
    cfg = self.builder_config
    tasks = [(item.path, cfg.short_side, cfg.max_fps, cfg.jpeg_quality) for item in items]
    with contextlib.ExitStack() as stack:
      if self._workers > 1 and len(tasks) > 1:
        pool = stack.enter_context(processes.pool(min(self._workers, len(tasks))))
        yield from pool.imap(_decode_task, tasks, chunksize=1)
      else:
        yield from map(_decode_task, tasks)

  def _generate_examples(self, split: str, items: Sequence[Item]):
    skipped, written, frames = [], 0, 0
    seen: set[str] = set()
    unique = []
    for item in items:
      if item.video_id in seen:
        skipped.append(
          {
            "where": item.where,
            "path": item.path,
            "reason": "duplicate",
            "detail": f"id {item.video_id!r} listed before",
          }
        )
      else:
        seen.add(item.video_id)
        unique.append(item)
    for item, video in zip(unique, self._decoded(unique)):
      if isinstance(video, dict):
        skipped.append({"where": item.where, **video})
        continue
      written += 1
      frames += len(video.frames)
      yield (
        item.video_id,
        {
          "id": item.video_id,
          "frames": video.frames,
          "fps": np.float32(video.fps),
          "num_frames": len(video.frames),
          "height": video.height,
          "width": video.width,
          "label": item.label,
        },
      )
    self._report(split, items, skipped, written, frames)

  def _report(self, split, items, skipped, written, frames):
    by_reason = dec.skip_counts(skipped)
    for s in skipped[:_WARN_EACH]:
      log.warning(
        "%s/%s: skipped %s (%s%s) listed at %s",
        self.name,
        split,
        s["path"],
        s["reason"],
        f": {s['detail']}" if s["detail"] else "",
        s["where"],
      )
    report_path = self.data_path / SKIP_REPORT.format(split=split)
    counts = {
      "listed": len(items),
      "written": written,
      "skipped": len(skipped),
      "skipped_by_reason": by_reason,
      "frames": frames,
    }
    report_path.write_text(
      json.dumps({"split": split, **counts, "skipped_files": skipped}, indent=1)
    )
    self.info.metadata["counts"][split] = counts
    if skipped:
      final = getattr(self, "_final_data_path", self.data_path)
      log.warning(
        "%s/%s: %d of %d listed videos skipped %s; list in %s",
        self.name,
        split,
        len(skipped),
        len(items),
        by_reason,
        final / report_path.name,
      )
    if not written:
      raise ManualDirError(
        f"{self.name}/{split}: none of the {len(items)} listed videos could "
        f"be used ({by_reason}); e.g. {skipped[0]['path']}"
      )


def video_id_of(path: str, root: str) -> str:
  rel = os.path.relpath(path, root)
  if rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
    rel = path
  return os.path.splitext(rel)[0].replace(os.sep, "/")


def require_file(path: str, what: str, instructions: str) -> str:
  if not os.path.isfile(path):
    raise ManualDirError(f"{path}: missing ({what})\n{instructions}")
  return path
