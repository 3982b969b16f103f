"""Something-Something v2 from the official label JSONs and videos (docs/data.md)."""

from __future__ import annotations

import json
import os

from mgvm.datasets.builders.base import (
  UNLABELLED,
  Item,
  ManualDirError,
  VideoBuilder,
  log,
  require_file,
)


class MgvmSsv2(VideoBuilder):
  """Something-Something v2 (174 classes) from the official label JSONs and .webm videos."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
From https://developer.qualcomm.com/software/ai-datasets/something-something: unpack the videos
and the labels archive into manual_dir:
manual_dir/
  labels/something-something-v2-labels.json      {"Holding something next to something": "27",
                                                  ...}  (class name -> index, 0..173)
  labels/something-something-v2-train.json       [{"id": "78687", "label": "...", "template":
  labels/something-something-v2-validation.json    "Holding [something] next to [something]",
                                                   "placeholders": [...]}, ...]
  labels/something-something-v2-test.json        (optional) [{"id": "1420"}, ...]: label -1
  20bn-something-something-v2/<id>.webm          (<id>.mp4 is used when there is no .webm)
Class of a video: its template without the brackets, looked up in labels.json.
"""

  SPLITS = (("train", "train", True), ("validation", "validation", True), ("test", "test", False))

  def _read_splits(self, root):
    labels_dir = os.path.join(root, "labels")
    labels_path = require_file(
      os.path.join(labels_dir, "something-something-v2-labels.json"),
      "SSv2 class names",
      self.MANUAL_DOWNLOAD_INSTRUCTIONS,
    )
    table = self._load_json(labels_path)
    if not isinstance(table, dict) or not table:
      raise ManualDirError(f"{labels_path}: expected a JSON object {{class name: index}}")
    index = {}
    for name, value in table.items():
      try:
        index[name] = int(value)
      except (TypeError, ValueError):
        raise ManualDirError(
          f"{labels_path}: class {name!r} has index {value!r}, not an integer"
        ) from None
    if sorted(index.values()) != list(range(len(index))):
      raise ManualDirError(f"{labels_path}: indices are not 0..{len(index) - 1}")
    names = sorted(index, key=index.get)
    splits = {}
    for split, stem, labelled in self.SPLITS:
      path = os.path.join(labels_dir, f"something-something-v2-{stem}.json")
      if not os.path.isfile(path):
        if labelled:
          log.warning("%s: %s not found; no %s split", self.name, path, split)
        continue
      splits[split] = self._read_split(path, root, index, labelled)
    if not splits:
      raise ManualDirError(
        f"{labels_dir}: no something-something-v2-{{train,validation,test}}"
        f".json\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    return splits, names

  @staticmethod
  def _load_json(path):
    try:
      with open(path, encoding="utf-8") as f:
        return json.load(f)
    except json.JSONDecodeError as e:
      raise ManualDirError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None

  def _read_split(self, path, root, index, labelled) -> list[Item]:
    entries = self._load_json(path)
    if not isinstance(entries, list):
      raise ManualDirError(f"{path}: expected a JSON list of videos")
    videos = os.path.join(root, "20bn-something-something-v2")
    items = []
    for number, entry in enumerate(entries, 1):
      where = f"{path} entry {number}"
      video_id = entry.get("id") if isinstance(entry, dict) else None
      if not isinstance(video_id, (str, int)) or not str(video_id).strip():
        raise ManualDirError(f"{where}: no 'id': {entry!r}")
      video_id = str(video_id).strip()
      label = UNLABELLED
      if labelled:
        template = entry.get("template")
        if not isinstance(template, str):
          raise ManualDirError(f"{where} (id {video_id}): no 'template'")
        name = template.replace("[", "").replace("]", "")
        if name not in index:
          raise ManualDirError(
            f"{where} (id {video_id}): template {template!r} -> {name!r} is "
            "not in something-something-v2-labels.json"
          )
        label = index[name]
      video = os.path.join(videos, f"{video_id}.webm")
      if not os.path.exists(video) and os.path.exists(os.path.join(videos, f"{video_id}.mp4")):
        video = os.path.join(videos, f"{video_id}.mp4")
      items.append(Item(video_id, video, label, where))
    return items
