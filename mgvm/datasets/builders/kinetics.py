"""Kinetics-400/600/700 from the official CSVs and the clips already downloaded (docs/data.md)."""

from __future__ import annotations

import csv
import os

from mgvm.datasets.builders.base import (
  UNLABELLED,
  VIDEO_EXTENSIONS,
  Item,
  ManualDirError,
  VideoBuilder,
  log,
  make_config,
)


class MgvmKinetics(VideoBuilder):
  """Kinetics-400/600/700 from the official CSVs and the clips you could download."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Kinetics (400, 600 or 700: the classes come from the CSVs) with the clips already downloaded:
manual_dir/
  train.csv  validate.csv (or val.csv)  test.csv     (any subset)
      official header `label,youtube_id,time_start,time_end,split[,is_cc]`
      (a CSV without a label column, e.g. the test CSV, is stored unlabelled: label -1)
  train/  val/ (or validate/)  test/
      clips named <youtube_id>_<time_start:06d>_<time_end:06d>.<mp4|webm|mkv|avi>,
      flat or in any subfolders (e.g. one per label); found by file stem
Classes: the labels of train.csv sorted alphabetically. Listed clips that are not there are
skipped (reason `missing`) and counted in <split>.skipped.json.
"""

  BUILDER_CONFIGS = [
    make_config(
      f"k{n}",
      description=f"Kinetics-{n}; short side 320, source "
      "rate (the classes come from the CSVs: the name only keeps the "
      "versions apart)",
    )
    for n in (400, 600, 700)
  ]

  SPLITS = (
    ("train", ("train.csv",), ("train",)),
    ("validation", ("validate.csv", "val.csv"), ("val", "validate")),
    ("test", ("test.csv",), ("test",)),
  )

  def _read_splits(self, root):
    rows: dict[str, list[tuple[str, str, str]]] = {}  # split -> (where, stem, label text)
    for split, csv_names, _dirs in self.SPLITS:
      path = next(
        (os.path.join(root, c) for c in csv_names if os.path.isfile(os.path.join(root, c))), None
      )
      if path is not None:
        rows[split] = self._read_csv(path)
    if not rows:
      raise ManualDirError(
        f"{root}: no Kinetics CSV (train.csv, validate.csv, test.csv)\n"
        f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    source = "train" if "train" in rows else next(iter(rows))
    if source != "train":
      log.warning("%s: no train.csv; class names taken from the %s CSV", self.name, source)
    names = sorted({label for _, _, label in rows[source] if label})
    expected = {"k400": 400, "k600": 600, "k700": 700}.get(self.builder_config.name)
    if expected and len(names) != expected:
      log.warning(
        "%s/%s: the %s CSV has %d classes, not %d",
        self.name,
        self.builder_config.name,
        source,
        len(names),
        expected,
      )
    index = {name: i for i, name in enumerate(names)}
    splits = {}
    for split, _, dirs in self.SPLITS:
      if split not in rows:
        continue
      found = self._find(root, dirs)
      items = []
      for where, stem, label in rows[split]:
        if label and label not in index:
          raise ManualDirError(f"{where}: label {label!r} is not a class of the {source} CSV")
        path = found.get(stem) or os.path.join(root, dirs[0], stem + VIDEO_EXTENSIONS[0])
        items.append(Item(stem, path, index[label] if label else UNLABELLED, where))
      splits[split] = items
    return splits, names

  @staticmethod
  def _read_csv(path) -> list[tuple[str, str, str]]:
    out = []
    with open(path, encoding="utf-8", newline="") as f:
      reader = csv.reader(f)
      header = next(reader, None)
      need = ("youtube_id", "time_start", "time_end")
      if header is None or any(h not in header for h in need):
        raise ManualDirError(
          f"{path}:1: header must have {', '.join(need)} (and label), got {header}"
        )
      col = {h: i for i, h in enumerate(header)}
      for row in reader:
        where = f"{path}:{reader.line_num}"
        if not row or not any(cell.strip() for cell in row):
          continue
        if len(row) != len(header):
          raise ManualDirError(f"{where}: {len(row)} fields, the header has {len(header)}")
        times = []
        for key in ("time_start", "time_end"):
          try:
            value = float(row[col[key]])
          except ValueError:
            value = -1.0
          if value < 0 or value != int(value):
            raise ManualDirError(
              f"{where}: {key} {row[col[key]]!r} is not a whole number of seconds"
            )
          times.append(int(value))
        youtube_id = row[col["youtube_id"]].strip()
        if not youtube_id:
          raise ManualDirError(f"{where}: empty youtube_id")
        label = row[col["label"]].strip() if "label" in col else ""
        out.append((where, f"{youtube_id}_{times[0]:06d}_{times[1]:06d}", label))
    return out

  @staticmethod
  def _find(root, dirs) -> dict[str, str]:
    """stem -> path of every video under root/<dir> (any depth), by extension preference."""
    found: dict[str, tuple[int, str]] = {}
    for d in dirs:
      for parent, _, files in os.walk(os.path.join(root, d)):
        for name in files:
          stem, ext = os.path.splitext(name)
          if ext.lower() in VIDEO_EXTENSIONS:
            rank = VIDEO_EXTENSIONS.index(ext.lower())
            if stem not in found or rank < found[stem][0]:
              found[stem] = (rank, os.path.join(parent, name))
    return {stem: path for stem, (_, path) in found.items()}
