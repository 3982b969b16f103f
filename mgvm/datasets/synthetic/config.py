"""The synthetic set's knobs and their defaults, in one place: the classes, `DEFAULT_SPLITS` and
`SyntheticConfig` (docs/synthetic.md). Imports neither TensorFlow nor the renderer: configs read
their defaults from here.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Mapping

CLASSES: tuple[str, ...] = (
  "still",
  "move_left",
  "move_right",
  "move_up",
  "move_down",
  "move_up_left",
  "move_up_right",
  "move_down_left",
  "move_down_right",
  "rotate_cw",
  "rotate_ccw",
  "grow",
  "shrink",
  "bounce",
  "sway",
)
# The classes whose actor translates at a constant velocity (exact motion is one vector).
TRANSLATIONS: tuple[str, ...] = tuple(c for c in CLASSES if c.startswith("move_"))
BACKGROUND_PATTERNS = ("noise", "gratings")
DISTRACTOR = "drift"  # the motion of distractors (not a class)
DEFAULT_SPLITS: dict[str, int] = {"train": 4000, "val": 400, "test": 400}  # what configs use
VIDEOS_PER_SHARD = 256  # a multi-host run needs a shard per host at least: lower it there

_RANGES = (
  "object_size",
  "speed",
  "rotation_speed",
  "scale_rate",
  "oscillation_amplitude",
  "oscillation_frequency",
  "distractor_speed",
  "distractor_jitter",
  "pan_speed",
)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """What varies and by how much. Ranges are (low, high), drawn uniformly per video/object.

  Sizes and speeds are fractions of the image size (per second for speeds).
  """

  image_size: int = 64
  min_seconds: float = 2.0
  max_seconds: float = 4.0
  min_fps: float = 10.0
  max_fps: float = 60.0
  classes: tuple[str, ...] = CLASSES
  min_actors: int = 1
  max_actors: int = 1
  min_distractors: int = 0
  max_distractors: int = 2
  camera_pan: bool = False
  object_size: tuple[float, float] = (0.24, 0.34)  # circumscribed diameter
  speed: tuple[float, float] = (0.05, 0.1)  # translation, image sizes / s
  rotation_speed: tuple[float, float] = (0.15, 0.35)  # turns / s
  scale_rate: tuple[float, float] = (0.1, 0.2)  # d log(scale) / dt, 1 / s
  oscillation_amplitude: tuple[float, float] = (0.08, 0.14)  # bounce / sway, image sizes
  oscillation_frequency: tuple[float, float] = (0.5, 1.0)  # Hz
  distractor_speed: tuple[float, float] = (0.0, 0.02)  # slow drift, image sizes / s
  distractor_jitter: tuple[float, float] = (0.005, 0.015)  # jitter amplitude, image sizes
  pan_speed: tuple[float, float] = (0.02, 0.05)  # background pan, image sizes / s
  background_detail: float = 1.0  # strength of the background's fine texture (0: smooth)
  # "noise": value noise plus `background_detail` fine texture; "gratings": two sinusoidal
  # gratings of random orientation, period and phase (patch content predictable from its
  # neighbours: the masking study's pre-training, docs/masking_study.md)
  background_pattern: str = "noise"
  jpeg_quality: int = 90

  def __post_init__(self):
    for name in _RANGES:  # JSON gives lists: store tuples
      object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
    for name in ("min_seconds", "max_seconds", "min_fps", "max_fps"):
      object.__setattr__(self, name, float(getattr(self, name)))
    object.__setattr__(self, "classes", tuple(self.classes))
    if not isinstance(self.image_size, int) or self.image_size < 16:
      raise ValueError(f"image_size must be an int >= 16, got {self.image_size!r}")
    if not 0 < self.min_seconds <= self.max_seconds:
      raise ValueError(
        f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}"
      )
    if not 0 < self.min_fps <= self.max_fps:
      raise ValueError(f"need 0 < min_fps <= max_fps, got {self.min_fps}, {self.max_fps}")
    if self.min_seconds * self.min_fps < 2:
      raise ValueError(
        f"min_seconds * min_fps = {self.min_seconds * self.min_fps} gives fewer than 2 frames"
      )
    if not self.classes:
      raise ValueError("classes is empty")
    for name in self.classes:
      check_class(name)
    if len(set(self.classes)) != len(self.classes):
      raise ValueError(f"classes has duplicates: {self.classes}")
    if not 1 <= self.min_actors <= self.max_actors:
      raise ValueError(
        f"need 1 <= min_actors <= max_actors, got {self.min_actors}, {self.max_actors}"
      )
    if not 0 <= self.min_distractors <= self.max_distractors:
      raise ValueError(
        f"need 0 <= min_distractors <= max_distractors, got "
        f"{self.min_distractors}, {self.max_distractors}"
      )
    for name in _RANGES:
      bounds = getattr(self, name)
      if len(bounds) != 2 or not 0 <= bounds[0] <= bounds[1]:
        raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {bounds}")
    if not (self.object_size[0] > 0 and self.object_size[1] <= 0.5):
      raise ValueError(f"object_size must lie in (0, 0.5], got {self.object_size}")
    object.__setattr__(self, "background_detail", float(self.background_detail))
    if not 0 <= self.background_detail <= 4:
      raise ValueError(f"background_detail must be in [0, 4], got {self.background_detail}")
    if self.background_pattern not in BACKGROUND_PATTERNS:
      raise ValueError(
        f"background_pattern must be one of {BACKGROUND_PATTERNS}, got {self.background_pattern!r}"
      )
    if not 1 <= self.jpeg_quality <= 100:
      raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")

  def to_dict(self) -> dict:
    """JSON-ready fields (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(self)))

  @classmethod
  def from_dict(cls, fields: Mapping) -> SyntheticConfig:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
      raise KeyError(f"unknown SyntheticConfig fields {unknown}; known: {sorted(known)}")
    return cls(**fields)


# Fields added after sets were written, at the value that reproduces those sets: left out of a
# set's identity at that value, so the sets keep their cache names and are reused.
LATER_FIELD_DEFAULTS = {"background_pattern": "noise"}


def identity_fields(fields: dict) -> dict:
  """`fields` (a config as a dict) without the `LATER_FIELD_DEFAULTS` at their defaults."""
  return {k: v for k, v in fields.items() if LATER_FIELD_DEFAULTS.get(k, object()) != v}


def check_class(name: str) -> int:
  """Index of `name` in `CLASSES`; ValueError naming it when unknown."""
  if name not in CLASSES:
    raise ValueError(f"unknown class {name!r}; known: {', '.join(CLASSES)}")
  return CLASSES.index(name)
