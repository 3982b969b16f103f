"""Your own videos as a tfds data set: VideoMAE-style lists, one per split (docs/data.md)."""

from __future__ import annotations

import os

from mgvm.datasets.builders.base import (
  UNLABELLED,
  Item,
  ManualDirError,
  VideoBuilder,
  video_id_of,
)
from mgvm.datasets.video_list import VideoListError, read_classes, read_list


class MgvmVideoFolder(VideoBuilder):
  """Your own videos: VideoMAE-style lists (`path label` per line), one list per split."""

  LIST_SPLITS = ("train", "val", "test")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
manual_dir/
  train.csv   val.csv   test.csv   (any subset; each file is a split named after it)
              VideoMAE lists: `path label` per line, space or comma separated (labels may be
              absent, then on every line: stored as -1); paths relative to manual_dir or absolute
  classes.txt (optional) one class name per line, line k = label k; without it the names are
              "0" .. "N-1" with N = 1 + the largest label listed
  <the videos, wherever the lists point>
"""

  def _read_splits(self, root):
    instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
    splits: dict[str, list[Item]] = {}
    top = (0, "")
    for split in self.LIST_SPLITS:
      path = os.path.join(root, f"{split}.csv")
      if not os.path.isfile(path):
        continue
      items = []
      for e in read_list(path, root):  # raises VideoListError naming FILE:LINE
        label = UNLABELLED if e.label is None else e.label
        where = f"{path}:{e.line}"
        if label + 1 > top[0]:
          top = (label + 1, where)
        items.append(Item(video_id_of(e.path, root), e.path, label, where))
      splits[split] = items
    if not splits:
      raise ManualDirError(
        f"{root}: none of {[f'{s}.csv' for s in self.LIST_SPLITS]} found\n{instructions}"
      )
    names_path = os.path.join(root, "classes.txt")
    if os.path.isfile(names_path):
      try:
        names = read_classes(names_path)
      except VideoListError as e:
        raise ManualDirError(str(e)) from None
      if top[0] > len(names):
        raise ManualDirError(
          f"{top[1]}: label {top[0] - 1} but {names_path} names only {len(names)} classes"
        )
    else:
      names = [str(i) for i in range(top[0])]
    return splits, names
