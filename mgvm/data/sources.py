"""Which files a config reads: the built-in synthetic set (generated on first use) or prepared shards."""

from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import json
import os
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Source:
  """The shards of each split plus what is known about the labels."""

  root: str
  files: dict[str, list[str]]
  class_names: tuple[str, ...] = ()
  parse_fn: Callable | None = None  # record parser; None = mgvm.data.format.parse_example
  max_label: int | None = None  # the largest label stored, where a summary records it
  label_info: str = ""  # where `max_label` comes from: the summary file and the video
  num_videos: tuple[tuple[str, int], ...] = ()  # (split, videos) where the source records it
  num_keyframes: tuple[tuple[str, int], ...] = ()  # (split, annotated frames) of a detection set

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def split(self, name: str) -> list[str]:
    if name not in self.files or not self.files[name]:
      raise FileNotFoundError(
        f"no shards for split {name!r} under {self.root} "
        f"(splits found: {sorted(k for k, v in self.files.items() if v)})"
      )
    return self.files[name]

  def count(self, split: str, what: str = "videos") -> int | None:
    """Videos (or annotated `"keyframes"`) in `split`, where the source records it (else None)."""
    if what not in ("videos", "keyframes"):
      raise ValueError(f"count what={what!r}; expected 'videos' or 'keyframes'")
    return dict(self.num_videos if what == "videos" else self.num_keyframes).get(split)


def default_root() -> str:
  return os.environ.get("MGVM_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "mgvm")


def _synthetic_settings(data_config):
  """(generator settings dict, split sizes, seed, videos per shard, `SyntheticConfig`)."""
  from mgvm.datasets import synthetic

  sc = dict(data_config.synthetic.to_dict())
  counts = {"train": sc.pop("num_train"), "val": sc.pop("num_val"), "test": sc.pop("num_test")}
  seed = sc.pop("seed")
  per_shard = sc.pop("videos_per_shard", synthetic.VIDEOS_PER_SHARD)
  return sc, counts, seed, per_shard, synthetic.SyntheticConfig(**sc)


def _synthetic(data_config, log: Callable[[str], None], motion: bool = False) -> Source:
  from mgvm.datasets import synthetic
  from mgvm.datasets.synthetic import write

  sc, counts, seed, per_shard, config = _synthetic_settings(data_config)
  motion_block = write.MOTION_BLOCK if motion else 0
  identity = [synthetic.identity_fields(sc), counts, seed] + (
    [per_shard] if per_shard != synthetic.VIDEOS_PER_SHARD else []
  )
  if motion_block:  # a set of its own: the records differ (their field), the frames do not
    identity.append({"motion_block": motion_block, "x264": write.MOTION_X264_OPTIONS})
  digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
  root = os.path.join(data_config.dir or default_root(), f"synthetic-{digest}")
  ensure = functools.partial(
    synthetic.ensure_dataset,
    root,
    config,
    splits=counts,
    seed=seed,
    log=log,
    videos_per_shard=per_shard,
    motion_block=motion_block,
  )
  _process_zero_first(ensure, "synthetic data set written")
  files = {split: synthetic.split_files(root, split) for split in counts}
  return Source(root, files, tuple(config.classes), num_videos=tuple(counts.items()))


def _process_zero_first(work: Callable[[], object], what: str) -> None:
  """`work()` on process 0, then (after all processes meet) on the others: on a shared
  directory they find what process 0 wrote, on a disk of their own they make their copy."""
  import jax

  if jax.process_count() == 1:
    work()
    return
  from jax.experimental import multihost_utils

  if jax.process_index() == 0:
    work()
  multihost_utils.sync_global_devices(what)
  if jax.process_index() != 0:
    work()


def _tfrecord(data_config) -> Source:
  root = data_config.dir
  if not root or not os.path.isdir(root):
    raise FileNotFoundError(f"config.data.dir={root!r} is not a directory of prepared shards")
  files: dict[str, list[str]] = {}
  for path in sorted(glob.glob(os.path.join(root, "*.tfrecord*"))):
    files.setdefault(os.path.basename(path).split("-", 1)[0], []).append(path)
  names: tuple[str, ...] = ()
  info = os.path.join(root, "dataset_info.json")
  if os.path.exists(info):
    with open(info) as f:
      names = tuple(json.load(f).get("classes", ()))
  max_label, label_info, num_videos, num_keyframes = None, "", (), ()
  summary_path = os.path.join(root, "summary.json")  # written by mgvm.datasets.prepare
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      try:
        summary = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{summary_path}: not a prepare summary ({e})") from None
    listed = tuple(summary.get("classes") or ())
    if listed and names and listed != names:
      raise ValueError(
        f"{summary_path} and {info} list different classes ({len(listed)} vs {len(names)})"
      )
    names = listed or names
    num_videos = tuple(
      (split, int(s["written"]))
      for split, s in sorted((summary.get("splits") or {}).items())
      if isinstance(s.get("written"), int)
    )
    num_keyframes = tuple(
      (split, int(s["annotated_frames"]))
      for split, s in sorted((summary.get("splits") or {}).items())
      if s.get("annotated_frames")
    )
    max_label = summary.get("max_label")
    video = summary.get("max_label_video") or {}
    if max_label is not None:
      label_info = (
        f"{summary_path}: largest label {max_label}, of {video.get('path')} (line "
        f"{video.get('line')} of {video.get('csv')}, split {video.get('split')!r})"
      )
  return Source(
    root,
    files,
    names,
    max_label=max_label,
    label_info=label_info,
    num_videos=num_videos,
    num_keyframes=num_keyframes,
  )


def _tfds(data_config) -> Source:
  """A data set built by a `mgvm.datasets.builders` builder (`tfds_name` under data_dir `dir`)."""
  import tensorflow_datasets as tfds

  from mgvm.datasets import builders as video_tfds  # registers the builders

  if not data_config.tfds_name:
    raise ValueError(
      'config.data.source="tfds" needs config.data.tfds_name, e.g. "mgvm_ucf101/split1"'
    )
  try:
    builder = tfds.builder(data_config.tfds_name, data_dir=data_config.dir or None)
  except Exception as e:  # unknown name / config: tfds lists the known ones
    raise ValueError(f"config.data.tfds_name={data_config.tfds_name!r}: {e}") from None
  if not builder.is_prepared():
    raise FileNotFoundError(
      f"{data_config.tfds_name} is not built under {builder.data_dir}: build it once with "
      f"builder.download_and_prepare(download_config=tfds.download.DownloadConfig("
      f"manual_dir=...)) (docs/data.md, 'Standard data sets')"
    )
  files = {split: video_tfds.tfrecord_files(builder, split) for split in builder.info.splits}
  return Source(
    str(builder.data_dir),
    files,
    video_tfds.class_names(builder),
    parse_fn=video_tfds.make_parser(builder),
    num_videos=tuple(
      (split, int(info.num_examples)) for split, info in builder.info.splits.items()
    ),
  )


def class_names(data_config) -> tuple[str, ...]:
  """The class names `config.data` names, without generating or reading any video: the synthetic
  set's, a prepared directory's `summary.json` / `dataset_info.json` list, a tfds builder's; ()
  when the data is not at hand (a workdir evaluated on another machine)."""
  try:
    if data_config.source == "synthetic":
      return tuple(_synthetic_settings(data_config)[-1].classes)
    if data_config.source in ("tfrecord", "tfds"):
      resolved = _tfrecord(data_config) if data_config.source == "tfrecord" else _tfds(data_config)
      return resolved.class_names
  except (FileNotFoundError, ValueError, KeyError, TypeError):
    pass
  return ()


def resolve(data_config, log: Callable[[str], None] = print, *, motion: bool = False) -> Source:
  """`config.data` → `Source`; `source` is "synthetic", "tfrecord" or "tfds".

  `motion`: the clips will need the codec motion field (`tasks.common.needs_motion`). The
  synthetic set is then written (once, in a directory of its own) with the field in every
  record; prepared shards must already hold it (`prepare --motion-vectors`)."""
  if data_config.source == "synthetic":
    return _synthetic(data_config, log, motion)
  if data_config.source == "tfrecord":
    return _tfrecord(data_config)
  if data_config.source == "tfds":
    return _tfds(data_config)
  raise ValueError(
    f"config.data.source must be 'synthetic', 'tfrecord' or 'tfds', got {data_config.source!r}"
  )
