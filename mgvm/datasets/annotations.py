"""Action-detection annotations (AVA CSVs, the ACT-detector UCF101-24 / JHMDB-21 pickles).

Every reader returns `DetectionAnnotations`: `frames` maps a frame key to its `Annotation`s
(one per person box, with all of that person's labels), plus class names, videos, splits and
the counts of what was dropped. `ground_truth_tuples` turns it into the input of
`mgvm.evaluate.frame_map.frame_map`. Pure Python + NumPy.

AVA (https://research.google.com/ava/download.html): rows
`video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]`, boxes normalised to [0, 1], frame key
`(video_id, int(timestamp))` (so `0902` and `902` are one frame, as the reference's
`"%s,%04d"` key). Class ids are the label map's (1-based for AVA).

ACT pickles (`UCF101v2-GT.pkl`, `JHMDB-GT.pkl`, Python-2 pickles), a dict with
  `labels`: class names, class id = position (0-based);
  `gttubes`: {video: {class id: [array [n, 5] of (frame number, x1, y1, x2, y2), pixels]}};
  `nframes`: {video: frame count}; `resolution`: {video: (height, width)};
  `train_videos`, `test_videos`: one list of videos per split (UCF101v2: 1, JHMDB: 3).
Frame numbers are 1-based (frame k is image `{k:05d}.jpg`/`.png`); the frame key is
`(video, frame number)` unchanged. Pickles are read by a restricted unpickler that builds only
NumPy arrays, dtypes and plain containers; anything else is refused before it runs.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import pickle
import re
from typing import Hashable, Iterable

import numpy as np

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Annotation:
  """One person box of a frame: xyxy float32 (normalised or pixels), its labels, its track."""

  box_xyxy: np.ndarray
  labels: tuple[int, ...]
  person_id: int | None = None


@dataclasses.dataclass
class DetectionAnnotations:
  """Per-frame annotations of one source and its metadata.

  `keyframes`: the annotated frame keys, sorted (AVA: the 1 Hz keyframes listed; ACT: every frame
  with a box). `splits`: split name -> videos (ACT: `train1`, `test1`, ...). `dropped`: counts of
  rows left out, by reason.
  """

  frames: dict[Hashable, list[Annotation]]
  class_names: dict[int, str]
  videos: list[str]
  splits: dict[str, list[str]] = dataclasses.field(default_factory=dict)
  num_frames: dict[str, int] = dataclasses.field(default_factory=dict)
  resolution: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
  dropped: dict[str, int] = dataclasses.field(default_factory=dict)

  @property
  def keyframes(self) -> list:
    return sorted(self.frames)


def ground_truth_tuples(frames: dict[Hashable, list[Annotation]]) -> list[tuple]:
  """`(frame_key, box, class_id)` per box and label, the ground truth input of `frame_map`."""
  return [
    (key, a.box_xyxy, label)
    for key, annotations in frames.items()
    for a in annotations
    for label in a.labels
  ]


# ----------------------------------------------------------------------------------------- AVA


def _ava_rows(path: str, sizes: tuple[int, ...]):
  """(line number, fields) of the non-blank lines of an AVA CSV, checking the field count."""
  with open(path, encoding="utf-8") as f:
    for number, raw in enumerate(f, 1):
      text = raw.strip()
      if not text:
        continue
      fields = [x.strip() for x in text.split(",")]
      if len(fields) not in sizes:
        want = " or ".join(str(s) for s in sizes)
        raise ValueError(
          f"{path}:{number}: expected {want} comma-separated fields, got {len(fields)}: {text!r}"
        )
      yield number, fields


def _timestamp(text: str, where: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise ValueError(f"{where}: timestamp {text!r} is not an integer number of seconds") from None


def _ava_box(fields: list[str], where: str) -> tuple[float, float, float, float]:
  try:
    x1, y1, x2, y2 = (float(v) for v in fields)
  except ValueError:
    raise ValueError(f"{where}: box {','.join(fields)!r} is not 4 numbers") from None
  if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
    raise ValueError(f"{where}: box {','.join(fields)!r} has a non-finite coordinate")
  if x2 < x1 or y2 < y1:
    raise ValueError(f"{where}: box {','.join(fields)!r} has x2 < x1 or y2 < y1")
  return x1, y1, x2, y2


def _int_field(text: str, what: str, where: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise ValueError(f"{where}: {what} {text!r} is not an integer") from None


def read_ava_excluded(path: str) -> set[tuple[str, int]]:
  """Frame keys `(video_id, timestamp)` of an excluded-timestamps CSV (`video_id,timestamp`)."""
  return {
    (fields[0], _timestamp(fields[1], f"{path}:{number}"))
    for number, fields in _ava_rows(path, (2,))
  }


def read_ava(
  path: str,
  label_map: dict[int, str] | None = None,
  excluded: Iterable[tuple[str, int]] | None = None,
) -> DetectionAnnotations:
  """AVA ground truth CSV (7 or 8 fields) into per-frame person annotations.

  Rows with the same frame, box and person id (or the same frame and box without a person
  column) merge into one `Annotation`; labels keep first-seen order, a repeated label is counted
  in `dropped["duplicate_label_rows"]` (the reference would count it as a second box). Rows whose
  action id is not in `label_map` are skipped as the AVA evaluation does
  (`dropped["unknown_label_rows"]`); rows of excluded frames are dropped
  (`dropped["excluded_rows"]`, `dropped["excluded_frames"]`). Annotations keep the order of
  their first row (AVA's files list a person's actions together, so per class this is the
  reference's row order, which decides ties between equally overlapping boxes). Boxes are
  float32 (the reference parses float64: an IoU within ~1e-7 of the threshold may differ).
  """
  skip = set(excluded or ())
  known = None if not label_map else set(label_map)
  frames: dict = {}
  by_person: dict = {}
  videos: dict[str, None] = {}
  dropped = {
    "excluded_rows": 0,
    "excluded_frames": 0,
    "unknown_label_rows": 0,
    "duplicate_label_rows": 0,
  }
  excluded_seen = set()
  for number, fields in _ava_rows(path, (7, 8)):
    where = f"{path}:{number}"
    video = fields[0]
    if not video:
      raise ValueError(f"{where}: empty video id")
    key = (video, _timestamp(fields[1], where))
    box = _ava_box(fields[2:6], where)
    action = _int_field(fields[6], "action id", where)
    person = _int_field(fields[7], "person id", where) if len(fields) == 8 else None
    if key in skip:
      dropped["excluded_rows"] += 1
      excluded_seen.add(key)
      continue
    if known is not None and action not in known:
      dropped["unknown_label_rows"] += 1
      continue
    videos.setdefault(video, None)
    labels = by_person.setdefault((key, box, person), [])
    if not labels:
      frames.setdefault(key, []).append((box, person, labels))
    if action in labels:
      dropped["duplicate_label_rows"] += 1
    else:
      labels.append(action)
  dropped["excluded_frames"] = len(excluded_seen)
  _report(path, dropped)
  out = {
    key: [
      Annotation(np.asarray(box, dtype=np.float32), tuple(labels), person)
      for box, person, labels in entries
    ]
    for key, entries in frames.items()
  }
  names = dict(label_map) if label_map else {}
  return DetectionAnnotations(frames=out, class_names=names, videos=list(videos), dropped=dropped)


def read_ava_predictions(
  path: str,
  class_ids: Iterable[int] | None = None,
  excluded: Iterable[tuple[str, int]] | None = None,
) -> list[tuple]:
  """AVA submission CSV `video_id,timestamp,x1,y1,x2,y2,action_id,score` -> `frame_map` input.

  Returns `(frame_key, box float64 [4], action_id, score)` in file order. Action ids not in
  `class_ids` (e.g. the label map's keys) and excluded frames are skipped, and the counts
  logged, as the AVA evaluation does.
  """
  known = None if class_ids is None else set(class_ids)
  skip = set(excluded or ())
  out = []
  unknown = dropped_excluded = 0
  for number, fields in _ava_rows(path, (8,)):
    where = f"{path}:{number}"
    key = (fields[0], _timestamp(fields[1], where))
    box = np.asarray(_ava_box(fields[2:6], where), dtype=np.float64)
    action = _int_field(fields[6], "action id", where)
    try:
      score = float(fields[7])
    except ValueError:
      raise ValueError(f"{where}: score {fields[7]!r} is not a number") from None
    if math.isnan(score):
      raise ValueError(f"{where}: score is NaN")
    if key in skip:
      dropped_excluded += 1
    elif known is not None and action not in known:
      unknown += 1
    else:
      out.append((key, box, action, score))
  _report(path, {"excluded_rows": dropped_excluded, "unknown_label_rows": unknown})
  return out


_TOKEN = re.compile(r'\s+|#[^\n]*|"((?:[^"\\\n]|\\.)*)"|([{}:])|([^\s{}:"#]+)')


def read_label_map(path: str) -> dict[int, str]:
  """{id: name} of a pbtxt label map, `item { name: ".." id: N }` or `label { name: ..
  label_id: N label_type: .. }` (AVA's `ava_action_list_v2.*.pbtxt`). Other fields are ignored."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  tokens = []  # (kind, value, line)
  line, pos = 1, 0
  while pos < len(text):
    m = _TOKEN.match(text, pos)
    if m is None:
      raise ValueError(f"{path}:{line}: cannot parse {text[pos : pos + 20]!r}")
    if m.group(1) is not None:
      tokens.append(("str", re.sub(r"\\(.)", r"\1", m.group(1)), line))
    elif m.group(2) is not None:
      tokens.append((m.group(2), m.group(2), line))
    elif m.group(3) is not None:
      tokens.append(("word", m.group(3), line))
    line += text.count("\n", pos, m.end())
    pos = m.end()

  out: dict[int, str] = {}
  i = 0

  def expect(kind: str) -> tuple:
    nonlocal i
    if i >= len(tokens):
      raise ValueError(f"{path}:{line}: unexpected end of file, expected {kind!r}")
    tok = tokens[i]
    if tok[0] != kind:
      raise ValueError(f"{path}:{tok[2]}: expected {kind!r}, got {tok[1]!r}")
    i += 1
    return tok

  while i < len(tokens):
    block = expect("word")
    if block[1] not in ("item", "label"):
      raise ValueError(f"{path}:{block[2]}: expected 'item {{' or 'label {{', got {block[1]!r}")
    expect("{")
    fields: dict[str, tuple] = {}
    while i < len(tokens) and tokens[i][0] != "}":
      name = expect("word")
      expect(":")
      if i >= len(tokens) or tokens[i][0] not in ("str", "word"):
        raise ValueError(f"{path}:{name[2]}: field {name[1]!r} has no value")
      fields[name[1]] = tokens[i]
      i += 1
    expect("}")
    where = f"{path}:{block[2]}"
    id_tok = fields.get("id") or fields.get("label_id")
    if id_tok is None or "name" not in fields:
      raise ValueError(f"{where}: {block[1]} block without both a name and an id / label_id")
    try:
      class_id = int(id_tok[1])
    except ValueError:
      raise ValueError(f"{path}:{id_tok[2]}: id {id_tok[1]!r} is not an integer") from None
    if class_id in out:
      raise ValueError(f"{path}:{id_tok[2]}: id {class_id} appears twice")
    out[class_id] = fields["name"][1]
  if not out:
    raise ValueError(f"{path}: no label entries")
  return out


def _report(path: str, counts: dict[str, int]) -> None:
  parts = [f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v]
  if parts:
    _log.info("%s: dropped %s", path, ", ".join(parts))


# ------------------------------------------------------------------------------- ACT pickles


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle asked for something other than NumPy arrays and plain containers."""


def _numpy_module(name: str):
  import importlib

  for prefix in ("numpy._core", "numpy.core"):
    try:
      return importlib.import_module(f"{prefix}.{name}")
    except ImportError:
      continue
  raise ImportError(f"numpy has no {name} module")


def _latin1_encode(text, encoding="latin1", errors="strict"):
  """`_codecs.encode` as protocol-2 pickles of bytes use it, restricted to latin-1."""
  if not isinstance(text, str) or encoding.lower().replace("_", "-") not in (
    "latin1",
    "latin-1",
    "iso-8859-1",
    "iso8859-1",
  ):
    raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
  return text.encode("latin-1", errors)


def _allowed_globals() -> dict[tuple[str, str], object]:
  multiarray = _numpy_module("multiarray")
  numeric = _numpy_module("numeric")
  allowed = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
  }
  for prefix in ("numpy.core", "numpy._core"):
    allowed[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
    allowed[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
    allowed[(f"{prefix}.numeric", "_frombuffer")] = numeric._frombuffer
  for module in ("builtins", "__builtin__"):
    for name, value in (("set", set), ("frozenset", frozenset), ("complex", complex)):
      allowed[(module, name)] = value
  return allowed


class _RestrictedUnpickler(pickle.Unpickler):
  def __init__(self, file, path: str):
    super().__init__(file, encoding="latin1")
    self._path = path
    self._allowed = _allowed_globals()

  def find_class(self, module, name):
    try:
      return self._allowed[(module, name)]
    except KeyError:
      raise UnsafePickleError(
        f"{self._path}: refusing to load {module}.{name}: only NumPy arrays and plain "
        "containers are allowed in annotation pickles"
      ) from None

  def persistent_load(self, pid):
    raise UnsafePickleError(f"{self._path}: refusing a persistent id in an annotation pickle")


def load_pickle(path: str):
  """Load a (Python 2 or 3) pickle of NumPy arrays and containers, refusing anything else."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    return _RestrictedUnpickler(io.BytesIO(data), path).load()
  except UnsafePickleError:
    raise
  except Exception as e:  # a truncated or corrupt file
    raise ValueError(f"{path}: not a readable pickle: {type(e).__name__}: {e}") from None


def read_act_pickle(path: str, normalize: bool = False) -> DetectionAnnotations:
  """An ACT-detector ground-truth pickle (`UCF101v2-GT.pkl`, `JHMDB-GT.pkl`).

  Frame keys `(video, frame number)`, 1-based as in the pickle; boxes xyxy in pixels, or
  divided by the video's (width, height) with `normalize=True`. `person_id` is the tube's index
  within its video (tubes numbered by class id, then list order). Splits `train1`, `test1`, ...
  """
  data = load_pickle(path)
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a dict, got {type(data).__name__}")
  for key in ("labels", "gttubes", "nframes", "train_videos", "test_videos", "resolution"):
    if key not in data:
      raise ValueError(f"{path}: missing key {key!r} (keys: {sorted(data)})")
  labels = list(data["labels"])
  class_names = {k: str(name) for k, name in enumerate(labels)}
  splits = {}
  for part in ("train", "test"):
    lists = data[f"{part}_videos"]
    if not isinstance(lists, (list, tuple)) or not all(isinstance(v, (list, tuple)) for v in lists):
      raise ValueError(f"{path}: {part}_videos must be a list of video lists (one per split)")
    for k, videos in enumerate(lists, 1):
      splits[f"{part}{k}"] = [str(v) for v in videos]
  for key in ("gttubes", "nframes", "resolution"):
    if not isinstance(data[key], dict):
      raise ValueError(
        f"{path}: {key} must be a dict keyed by video, got {type(data[key]).__name__}"
      )
  num_frames = {str(v): int(n) for v, n in data["nframes"].items()}
  resolution = {str(v): (int(hw[0]), int(hw[1])) for v, hw in data["resolution"].items()}

  frames: dict = {}
  outside = 0
  for video in sorted(data["gttubes"]):
    tubes_by_class = data["gttubes"][video]
    if not isinstance(tubes_by_class, dict):
      raise ValueError(f"{path}: gttubes[{video!r}] must be a dict class -> tubes")
    if normalize and video not in resolution:
      raise ValueError(f"{path}: no resolution for video {video!r}, cannot normalise")
    scale = np.ones(4, dtype=np.float64)
    if normalize:
      h, w = resolution[video]
      scale = np.array([w, h, w, h], dtype=np.float64)
    tube_id = 0
    for cls in sorted(tubes_by_class):
      where = f"{path}: gttubes[{video!r}][{cls!r}]"
      if not isinstance(cls, (int, np.integer)) or not 0 <= cls < len(labels):
        raise ValueError(f"{where}: class id must be an index into labels (0..{len(labels) - 1})")
      for t, tube in enumerate(tubes_by_class[cls]):
        tube = np.asarray(tube)
        if tube.ndim != 2 or tube.shape[1] != 5:
          raise ValueError(
            f"{where}[{t}]: expected an [n, 5] array (frame, x1, y1, x2, y2), "
            f"got shape {tube.shape}"
          )
        tube = tube.astype(np.float64)
        if not np.all(np.isfinite(tube)):
          raise ValueError(f"{where}[{t}]: non-finite value")
        numbers = tube[:, 0]
        if np.any(numbers != np.round(numbers)) or np.any(numbers < 1):
          raise ValueError(f"{where}[{t}]: frame numbers must be integers >= 1 (1-based)")
        bad = np.nonzero((tube[:, 3] < tube[:, 1]) | (tube[:, 4] < tube[:, 2]))[0]
        if bad.size:
          raise ValueError(
            f"{where}[{t}]: row {bad[0]} has x2 < x1 or y2 < y1: {tube[bad[0]].tolist()}"
          )
        limit = num_frames.get(str(video))
        if limit is not None:
          outside += int(np.sum(numbers > limit))
        boxes = (tube[:, 1:] / scale).astype(np.float32)
        for number, box in zip(numbers.astype(np.int64), boxes):
          frames.setdefault((str(video), int(number)), []).append(
            Annotation(box, (int(cls),), tube_id)
          )
        tube_id += 1
  if outside:
    _log.warning("%s: %d boxes lie on frame numbers beyond the video's nframes", path, outside)
  videos = sorted(set(num_frames) | {str(v) for v in data["gttubes"]})
  return DetectionAnnotations(
    frames=dict(sorted(frames.items())),
    class_names=class_names,
    videos=videos,
    splits=splits,
    num_frames=num_frames,
    resolution=resolution,
  )


def select_videos(
  annotations: DetectionAnnotations, videos: Iterable[str]
) -> dict[Hashable, list[Annotation]]:
  """The frames of the given videos (e.g. `annotations.splits["test1"]`); keys are (video, ...)."""
  wanted = set(videos)
  return {key: a for key, a in annotations.frames.items() if key[0] in wanted}
