"""HMDB51 from the official videos and split files (docs/data.md)."""

from __future__ import annotations

import os
import re

from mgvm.datasets.builders.base import (
  Item,
  ManualDirError,
  VideoBuilder,
  read_lines,
  split_configs,
)


class MgvmHmdb51(VideoBuilder):
  """HMDB51 (51 classes, alphabetical) from the videos and the official 70/30 split files."""

  BUILDER_CONFIGS = split_configs()
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
From https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/: unpack
hmdb51_org.rar (and the per-class .rar files in it) and test_train_splits.rar into manual_dir:
manual_dir/
  hmdb51/<class>/<video>.avi
  testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt
      lines `<video>.avi <0|1|2>`: 1 = train, 2 = test, 0 = in neither
Classes: the <class> names of the split files, sorted alphabetically (label = position).
"""

  _SPLIT_FILE = re.compile(r"^(.+)_test_split([123])\.txt$")

  def _read_splits(self, root):
    instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
    folder = os.path.join(root, "testTrainMulti_7030_splits")
    n = self.builder_config.split_number
    files = {}
    if os.path.isdir(folder):
      for name in os.listdir(folder):
        m = self._SPLIT_FILE.match(name)
        if m and int(m.group(2)) == n:
          files[m.group(1)] = os.path.join(folder, name)
    if not files:
      raise ManualDirError(f"{folder}: no <class>_test_split{n}.txt files\n{instructions}")
    names = sorted(files)
    splits: dict[str, list[Item]] = {"train": [], "test": []}
    for label, cls in enumerate(names):
      path = files[cls]
      for number, raw in enumerate(read_lines(path), 1):
        fields = raw.split()
        if not fields:
          continue
        where = f"{path}:{number}"
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
          raise ManualDirError(f"{where}: expected '<video>.avi <0|1|2>', got {raw!r}")
        if fields[1] == "0":
          continue
        video = os.path.join(root, "hmdb51", cls, fields[0])
        splits["train" if fields[1] == "1" else "test"].append(
          Item(f"{cls}/{os.path.splitext(fields[0])[0]}", video, label, where)
        )
    return splits, names
