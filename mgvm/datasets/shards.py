"""Record shards as every writer makes them (synthetic set, `prepare`): names, atomic writes, clean-up.

A shard is `<split>-<k:05d>-of-<n:05d>.tfrecord`. It is written to a hidden `.<name>.tmp` and
renamed when complete, so a reader never sees a partial shard and an interrupted writer leaves
only temporary files, which the next run removes. Shards of the split that the current run did
not write (an earlier run with another shard size) are stale: they would be read as more videos,
so they go, with their sidecar files.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from typing import Iterator, Sequence


def shard_name(split: str, shard: int, num_shards: int) -> str:
  return f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"


def split_shards(out_dir: str, split: str) -> list[str]:
  """Paths of every shard of `split` in `out_dir`, by name (sorted)."""
  return sorted(glob.glob(os.path.join(out_dir, f"{split}-[0-9]*-of-[0-9]*.tfrecord")))


@contextlib.contextmanager
def write_shard(out_dir: str, name: str) -> Iterator:
  """`with write_shard(dir, name) as writer: writer.write(record)`: the shard appears, whole, on
  a clean exit; on an exception the temporary file is removed and the shard left untouched."""
  import tensorflow as tf

  tmp = os.path.join(out_dir, f".{name}.tmp")
  try:
    with tf.io.TFRecordWriter(tmp) as writer:
      yield writer
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise
  os.replace(tmp, os.path.join(out_dir, name))


def remove_partial(out_dir: str, split: str = "") -> list[str]:
  """Removes the temporary shards an interrupted writer left (of `split` only, when given:
  another split may be written at the same time); returns their paths."""
  pattern = f".{split}-[0-9]*-of-[0-9]*.tfrecord.tmp" if split else ".*.tfrecord.tmp"
  partial = glob.glob(os.path.join(out_dir, pattern))
  for path in partial:
    os.remove(path)
  return partial


def remove_stale(
  out_dir: str, split: str, keep: Sequence[str], sidecar_dirs: Sequence[str] = ()
) -> list[str]:
  """Removes the shards of `split` not named in `keep`, and their `<name>.json` in each of
  `sidecar_dirs` (relative to `out_dir`); returns the removed shard names."""
  keep = set(keep)
  removed = []
  for path in split_shards(out_dir, split):
    name = os.path.basename(path)
    if name in keep:
      continue
    os.remove(path)
    for folder in sidecar_dirs:
      with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(out_dir, folder, f"{name}.json"))
    removed.append(name)
  return removed


def write_json(path: str, value, indent: int | None = 1) -> None:
  """`value` as JSON at `path`, atomically (written to `path.tmp`, then renamed)."""
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=indent)
  os.replace(path + ".tmp", path)
