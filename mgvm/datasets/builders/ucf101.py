"""UCF101 from the official videos and train/test lists (docs/data.md)."""

from __future__ import annotations

import os

from mgvm.datasets.builders.base import (
  Item,
  ManualDirError,
  VideoBuilder,
  read_lines,
  require_file,
  split_configs,
)


class MgvmUcf101(VideoBuilder):
  """UCF101 (101 classes) from the official videos and train/test lists."""

  BUILDER_CONFIGS = split_configs()
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
From https://www.crcv.ucf.edu/data/UCF101.php: unpack UCF101.rar and
UCF101TrainTestSplits-RecognitionTask.zip into manual_dir:
manual_dir/
  UCF-101/<Class>/v_<Class>_gXX_cYY.avi
  ucfTrainTestlist/classInd.txt            `1 ApplyEyeMakeup` ... (1-based; label = index - 1)
  ucfTrainTestlist/trainlist0{1,2,3}.txt   `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`
  ucfTrainTestlist/testlist0{1,2,3}.txt    `ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi`
                                           (label from the class folder via classInd.txt)
"""

  def _read_splits(self, root):
    instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
    lists = os.path.join(root, "ucfTrainTestlist")
    ind_path = require_file(os.path.join(lists, "classInd.txt"), "UCF101 class index", instructions)
    names: list[str] = []
    for number, raw in enumerate(read_lines(ind_path), 1):
      fields = raw.split()
      if not fields:
        continue
      if len(fields) != 2 or not fields[0].isdigit():
        raise ManualDirError(f"{ind_path}:{number}: expected 'index ClassName', got {raw!r}")
      if int(fields[0]) != len(names) + 1:
        raise ManualDirError(
          f"{ind_path}:{number}: index {fields[0]}, expected {len(names) + 1} (1-based, in order)"
        )
      names.append(fields[1])
    if not names:
      raise ManualDirError(f"{ind_path}: no classes")
    index = {name: i for i, name in enumerate(names)}
    n = self.builder_config.split_number
    splits = {}
    for split, stem, labelled in (("train", "trainlist", True), ("test", "testlist", False)):
      path = require_file(
        os.path.join(lists, f"{stem}{n:02d}.txt"), f"UCF101 {split} list", instructions
      )
      splits[split] = self._read_list(path, root, index, names, labelled)
    return splits, names

  @staticmethod
  def _read_list(path, root, index, names, labelled) -> list[Item]:
    items = []
    for number, raw in enumerate(read_lines(path), 1):
      fields = raw.split()
      if not fields:
        continue
      where = f"{path}:{number}"
      if len(fields) > 2 or (labelled and len(fields) != 2):
        raise ManualDirError(
          f"{where}: expected "
          f"{'Class/video.avi label' if labelled else 'Class/video.avi'}, "
          f"got {raw!r}"
        )
      rel = fields[0]
      folder, _, name = rel.partition("/")
      if not name or "/" in name:
        raise ManualDirError(f"{where}: expected Class/video.avi, got {rel!r}")
      if folder not in index:
        raise ManualDirError(f"{where}: class folder {folder!r} is not in classInd.txt")
      label = index[folder]
      if len(fields) == 2:
        if not fields[1].isdigit() or not 1 <= int(fields[1]) <= len(names):
          raise ManualDirError(f"{where}: label {fields[1]!r} is not in 1..{len(names)}")
        if int(fields[1]) - 1 != label:
          raise ManualDirError(
            f"{where}: label {fields[1]} ({names[int(fields[1]) - 1]}) "
            f"disagrees with the folder {folder!r}"
          )
      video = os.path.join(root, "UCF-101", folder, name)
      if not os.path.exists(video):  # the official lists and some copies disagree on one case
        for a, b in (
          ("HandstandPushups", "HandStandPushups"),
          ("HandStandPushups", "HandstandPushups"),
        ):
          other = os.path.join(root, "UCF-101", folder, name.replace(a, b))
          if a in name and os.path.exists(other):
            video = other
            break
      items.append(Item(os.path.splitext(name)[0], video, label, where))
    return items
