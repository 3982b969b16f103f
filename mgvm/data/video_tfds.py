"""tfds builders for standard video data sets, built offline from files the user already has.

Nothing is ever downloaded: each builder reads the videos and the official split files from
`manual_dir` (its layout is in the builder's `MANUAL_DOWNLOAD_INSTRUCTIONS` and in docs/data.md).

    from mgvm.data import video_tfds   # registers the builders below with tfds
    builder = video_tfds.MgvmUcf101(config="split1", data_dir=DATA_DIR)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=MANUAL_DIR))
    ds = builder.as_dataset(split="train")      # frames decoded to uint8 [N, H, W, 3]

| builder (tfds name)                     | configs                  | splits                    |
| `MgvmVideoFolder` (`mgvm_video_folder`)  | default                  | one per list file present |
| `MgvmUcf101` (`mgvm_ucf101`)             | split1, split2, split3   | train, test               |
| `MgvmHmdb51` (`mgvm_hmdb51`)             | split1, split2, split3   | train, test               |
| `MgvmKinetics` (`mgvm_kinetics`)         | k400, k600, k700         | train, validation, test   |
| `MgvmSsv2` (`mgvm_ssv2`)                 | default                  | train, validation, test   |

Every video is decoded with `mgvm.data.decode.decode` (PyAV, constant rate by timestamps,
`short_side` / `max_fps` from the config) and stored as per-frame JPEG (`decode.jpeg_encoder`, encoded as each frame is decoded).

Features (all builders): `id` (text), `frames` (Sequence of JPEG images), `fps` (float32, the
rate stored), `num_frames`, `height`, `width` (int64, as stored) and `label` (int64). Labels are
plain integers, not `ClassLabel`, because unlabelled splits (Kinetics / SSv2 test, unlabelled
lists) store -1, which `ClassLabel` cannot hold; the class names are in
`builder.info.metadata["class_names"]` (also `class_names(builder)`).

Files that cannot be used (missing, empty, unreadable, no video stream, no frames, truncated,
or a second entry for the same video) are skipped with a logged warning, never fatal; each split's
skip list is written next to the data as `<split>.skipped.json` and counted in
`builder.info.metadata["counts"]`. A split none of whose videos exist is left out with a warning.
A malformed list / CSV / JSON entry stops the build at once, naming FILE:LINE (JSON: FILE and
entry number) and the reason.

For mgvm's own pipeline, `tfrecord_files(builder, split)` and `make_parser(builder)` read the
built shards without decoding frames (the parser returns `mgvm.data.format.parse_example`'s dict).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import functools
import json
import logging
import os
import re
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mgvm.data import decode as dec
from mgvm.data import processes
from mgvm.data.video_list import VideoListError, read_list

log = logging.getLogger(__name__)

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


def _split_configs() -> list[MgvmVideoConfig]:
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


def _read_lines(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return f.read().splitlines()


def _decode_task(task) -> tuple:
  """Worker: (jpegs, fps, height, width) or (None, reason, detail)."""
  path, short_side, max_fps, quality = task
  try:
    video = dec.decode(
      path, max_fps=max_fps, short_side=short_side, convert=dec.jpeg_encoder(quality)
    )  # holds JPEGs, not frames
  except dec.DecodeError as e:
    return None, e.reason, e.detail
  return video.frames, video.fps, video.height, video.width


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


class _VideoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
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
    for item, result in zip(unique, self._decoded(unique)):
      if result[0] is None:
        skipped.append(
          {"where": item.where, "path": item.path, "reason": result[1], "detail": result[2]}
        )
        continue
      jpegs, fps, h, w = result
      written += 1
      frames += len(jpegs)
      yield (
        item.video_id,
        {
          "id": item.video_id,
          "frames": jpegs,
          "fps": np.float32(fps),
          "num_frames": len(jpegs),
          "height": h,
          "width": w,
          "label": item.label,
        },
      )
    self._report(split, items, skipped, written, frames)

  def _report(self, split, items, skipped, written, frames):
    by_reason = dict(sorted(collections.Counter(s["reason"] for s in skipped).items()))
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


def _video_id(path: str, root: str) -> str:
  rel = os.path.relpath(path, root)
  if rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
    rel = path
  return os.path.splitext(rel)[0].replace(os.sep, "/")


def _require(path: str, what: str, instructions: str) -> str:
  if not os.path.isfile(path):
    raise ManualDirError(f"{path}: missing ({what})\n{instructions}")
  return path


# ------------------------------------------------------------------------------ folder + CSV


class MgvmVideoFolder(_VideoBuilder):
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
        items.append(Item(_video_id(e.path, root), e.path, label, where))
      splits[split] = items
    if not splits:
      raise ManualDirError(
        f"{root}: none of {[f'{s}.csv' for s in self.LIST_SPLITS]} found\n{instructions}"
      )
    names_path = os.path.join(root, "classes.txt")
    if os.path.isfile(names_path):
      names = [line.strip() for line in _read_lines(names_path)]
      while names and not names[-1]:
        names.pop()
      for number, name in enumerate(names, 1):
        if not name:
          raise ManualDirError(f"{names_path}:{number}: empty class name")
      if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ManualDirError(f"{names_path}:{names.index(dup) + 1}: class {dup!r} repeated")
      if top[0] > len(names):
        raise ManualDirError(
          f"{top[1]}: label {top[0] - 1} but {names_path} names only {len(names)} classes"
        )
    else:
      names = [str(i) for i in range(top[0])]
    return splits, names


# ------------------------------------------------------------------------------ UCF101


class MgvmUcf101(_VideoBuilder):
  """UCF101 (101 classes) from the official videos and train/test lists."""

  BUILDER_CONFIGS = _split_configs()
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
    ind_path = _require(os.path.join(lists, "classInd.txt"), "UCF101 class index", instructions)
    names: list[str] = []
    for number, raw in enumerate(_read_lines(ind_path), 1):
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
      path = _require(
        os.path.join(lists, f"{stem}{n:02d}.txt"), f"UCF101 {split} list", instructions
      )
      splits[split] = self._read_list(path, root, index, names, labelled)
    return splits, names

  @staticmethod
  def _read_list(path, root, index, names, labelled) -> list[Item]:
    items = []
    for number, raw in enumerate(_read_lines(path), 1):
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


# ------------------------------------------------------------------------------ HMDB51


class MgvmHmdb51(_VideoBuilder):
  """HMDB51 (51 classes, alphabetical) from the videos and the official 70/30 split files."""

  BUILDER_CONFIGS = _split_configs()
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
      for number, raw in enumerate(_read_lines(path), 1):
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


# ------------------------------------------------------------------------------ Kinetics


class MgvmKinetics(_VideoBuilder):
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


# ------------------------------------------------------------------------------ SSv2


class MgvmSsv2(_VideoBuilder):
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
    labels_path = _require(
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


# ------------------------------------------------------------------------------ mgvm adapter


def class_names(builder: tfds.core.DatasetBuilder) -> tuple[str, ...]:
  """The class names of a prepared data set (label k = name k)."""
  return tuple(builder.info.metadata.get("class_names", ()))


def skip_report(builder: tfds.core.DatasetBuilder, split: str) -> dict:
  """The `<split>.skipped.json` written when `split` was built."""
  path = builder.data_path / SKIP_REPORT.format(split=split)
  return json.loads(path.read_text())


def tfrecord_files(builder: tfds.core.DatasetBuilder, split: str) -> list[str]:
  """The shard paths of a prepared split (TFRecord files of tfds-serialised `tf.train.Example`s)."""
  if not builder.is_prepared():
    raise FileNotFoundError(
      f"{builder.info.full_name} is not prepared under "
      f"{builder.data_dir}: run download_and_prepare first"
    )
  file_format = builder.info.file_format
  if file_format is not None and file_format != tfds.core.FileFormat.TFRECORD:
    raise ValueError(f"{builder.info.full_name} is stored as {file_format.value}, not tfrecord")
  if split not in builder.info.splits:
    raise KeyError(
      f"{builder.info.full_name} has no split {split!r}; it has {sorted(builder.info.splits)}"
    )
  return [os.fspath(p) for p in builder.info.splits[split].filepaths]


class _KeepJpeg(tfds.decode.SkipDecoding):
  """SkipDecoding that also skips tfds's per-frame `tf.map_fn` for a Sequence of images."""

  def decode_batch_example(self, serialized_example):
    return serialized_example


def parse_example(
  serialized: tf.Tensor, features: tfds.features.FeaturesDict
) -> dict[str, tf.Tensor]:
  """One record of these builders → exactly `mgvm.data.format.parse_example`'s dict.

  Graph-mode safe; the frames stay JPEG bytes ([num_frames] tf.string, not decoded).
  """
  ex = features.deserialize_example(serialized, decoders={"frames": _KeepJpeg()})
  return {
    "id": ex["id"],
    "fps": tf.cast(ex["fps"], tf.float32),
    "num_frames": tf.cast(ex["num_frames"], tf.int32),
    "height": tf.cast(ex["height"], tf.int32),
    "width": tf.cast(ex["width"], tf.int32),
    "label": tf.cast(ex["label"], tf.int32),
    "frames": ex["frames"],
  }


def make_parser(builder: tfds.core.DatasetBuilder):
  """`serialized -> dict` for `tf.data.TFRecordDataset(tfrecord_files(...)).map(...)`."""
  return functools.partial(parse_example, features=builder.info.features)
