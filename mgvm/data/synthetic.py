"""The built-in synthetic motion data set: made locally from a seed, the motion defines the class.

Every video shows a textured background (optionally panning) and 1-3 textured star-shaped
objects. The *actors* move by their class (`CLASSES`); *distractors* drift slowly and jitter.
Appearance, size and start position never depend on the class, so one frame cannot tell the
classes apart. Motion is a function of continuous time t = frame / fps, with speeds in pixels per
second, so every native frame rate (drawn per video) shows the same motion.

Coordinates: x to the right, y down, pixel (row r, column c) covers [c, c+1] x [r, r+1]; boxes
are x1 y1 x2 y2 divided by the image size. Video i of split s depends only on (seed, s, i).

This module imports no TensorFlow at import time (flow benchmarks use `render_video` without
it); writing TFRecords imports `mgvm.data.format` when called.
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import glob
import io
import json
import math
import os
import re
import time
import zlib
from typing import Callable, Mapping, Sequence

import numpy as np

from mgvm.data import processes

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
DISTRACTOR = "drift"  # the motion of distractors (not a class)
DEFAULT_SPLITS: dict[str, int] = {"train": 2000, "val": 200, "test": 200}
INFO_FILE = "dataset_info.json"
VERSION = 1  # bump when rendering changes, so `ensure_dataset` regenerates

_DIAG = math.sqrt(0.5)
_DIRECTIONS = {
  "move_left": (-1.0, 0.0),
  "move_right": (1.0, 0.0),
  "move_up": (0.0, -1.0),
  "move_down": (0.0, 1.0),
  "move_up_left": (-_DIAG, -_DIAG),
  "move_up_right": (_DIAG, -_DIAG),
  "move_down_left": (-_DIAG, _DIAG),
  "move_down_right": (_DIAG, _DIAG),
}
_ROOM = 0.04  # fraction of the image size left free for the start position on each side
_TAG_SCENE, _TAG_LABEL, _TAG_ACTOR, _TAG_DISTRACTOR = 11, 12, 13, 14
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")
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


def check_class(name: str) -> int:
  """Index of `name` in `CLASSES`; ValueError naming it when unknown."""
  if name not in CLASSES:
    raise ValueError(f"unknown class {name!r}; known: {', '.join(CLASSES)}")
  return CLASSES.index(name)


# ------------------------------------------------------------------------------ scene


@dataclasses.dataclass(frozen=True, eq=False)
class SceneObject:
  """One moving object: a textured star polygon with a motion in image pixels."""

  motion: str  # a class name for actors, DISTRACTOR for distractors
  center: tuple[float, float]  # px at t = 0 (the rotation / scaling centre)
  radius: float  # px, largest vertex distance at scale 1
  angle: float  # rad at t = 0 (clockwise on screen)
  vertices: np.ndarray  # [K] vertex radii in (0, 1] at local angles -pi + 2 pi k / K
  colors: np.ndarray  # [2, 3] the two texture colours, 0..255
  waves: np.ndarray  # [2, 3] texture plane waves: cycles per radius, direction, phase
  spot: tuple[float, float, float]  # off-centre blob (x, y in local units, +-1 bright / dark)
  speed: float = 0.0  # px / s (translations)
  spin: float = 0.0  # rad / s (rotations)
  scale_rate: float = 0.0  # 1 / s (grow / shrink: scale = exp(+-rate t))
  amplitude: float = 0.0  # px (bounce / sway)
  frequency: float = 0.0  # Hz (bounce / sway)
  sign: float = 1.0  # first direction of bounce / sway
  drift: tuple[float, float] = (0.0, 0.0)  # px / s (distractors)
  jitter: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 5)))
  # jitter rows: amplitude x, amplitude y (px), frequency (Hz), phase x, phase y (rad)

  def poses(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres [T, 2] (px), angles [T] (rad) and scales [T] at `times` (s)."""
    t = np.asarray(times, np.float64)
    center = np.tile(np.asarray(self.center, np.float64), (len(t), 1))
    angle = np.full(len(t), self.angle)
    scale = np.ones(len(t))
    m = self.motion
    if m in _DIRECTIONS:
      center += self.speed * np.outer(t, _DIRECTIONS[m])
    elif m in ("rotate_cw", "rotate_ccw"):
      angle += (1 if m == "rotate_cw" else -1) * self.spin * t
    elif m in ("grow", "shrink"):
      scale = np.exp((1 if m == "grow" else -1) * self.scale_rate * t)
    elif m in ("bounce", "sway"):
      center[:, 1 if m == "bounce" else 0] += (
        self.sign * self.amplitude * np.sin(2 * np.pi * self.frequency * t)
      )
    elif m == DISTRACTOR:
      center += np.outer(t, self.drift)
      for ax, ay, f, px, py in self.jitter:
        w = 2 * np.pi * f * t
        center[:, 0] += ax * (np.sin(w + px) - np.sin(px))
        center[:, 1] += ay * (np.sin(w + py) - np.sin(py))
    elif m != "still":
      raise ValueError(f"unknown motion {m!r}; known: {', '.join(CLASSES + (DISTRACTOR,))}")
    return center, angle, scale


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
  """Everything that defines one video, independent of the frame rate it is rendered at."""

  id: str
  image_size: int
  fps: float  # native frame rate
  duration: float  # s; frames at t = i / fps for t <= duration
  classes: tuple[str, ...]  # label i is classes[i]
  num_actors: int  # objects[:num_actors] are actors, the rest distractors
  objects: tuple[SceneObject, ...]
  depth: tuple[int, ...]  # painting order of `objects`, bottom first
  background: np.ndarray  # [S + 2M, S + 2M, 3] float32 texture; frame shows the centre
  pan: tuple[float, float] = (0.0, 0.0)  # background velocity in px / s

  def num_frames(self, fps: float | None = None) -> int:
    fps = self.fps if fps is None else fps
    return max(2, int(math.floor(self.duration * fps + 1e-6)))

  def labels(self) -> list[int]:
    return [self.classes.index(o.motion) for o in self.objects[: self.num_actors]]

  def with_motion(self, actor: int, name: str) -> Scene:
    """The same scene with actor `actor` performing class `name` (everything else unchanged)."""
    if name not in self.classes:
      raise ValueError(f"unknown class {name!r}; this scene's classes: {', '.join(self.classes)}")
    if not 0 <= actor < self.num_actors:
      raise ValueError(f"actor {actor} out of range: the scene has {self.num_actors} actors")
    objects = list(self.objects)
    objects[actor] = dataclasses.replace(objects[actor], motion=name)
    return dataclasses.replace(self, objects=tuple(objects))

  def poses(self, times) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres [T, O, 2], angles [T, O], scales [T, O] of all objects at `times`."""
    c, a, s = zip(*(o.poses(times) for o in self.objects))
    return np.stack(c, 1), np.stack(a, 1), np.stack(s, 1)


def _split_code(split: str) -> int:
  if not isinstance(split, str) or not _SPLIT_NAME.fullmatch(split):
    raise ValueError(f"split must be a non-empty name of letters, digits or _, got {split!r}")
  return zlib.crc32(split.encode())


def _rng(*entropy: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence([int(e) for e in entropy]))


def _check_seed_index(seed: int, index: int):
  if int(seed) != seed or seed < 0:
    raise ValueError(f"seed must be an int >= 0, got {seed!r}")
  if int(index) != index or index < 0:
    raise ValueError(f"index must be an int >= 0, got {index!r}")


def clip_label(config: SyntheticConfig, seed: int, split: str, index: int) -> int:
  """Class of actor 0: each block of len(classes) consecutive indices holds every class once."""
  c = len(config.classes)
  perm = _rng(_TAG_LABEL, seed, _split_code(split), index // c).permutation(c)
  return int(perm[index % c])


def _uniform(rng, bounds, scale=1.0) -> float:
  return float(rng.uniform(bounds[0], bounds[1])) * scale


def _interp_matrix(n: int, g: int, cell: float) -> np.ndarray:
  """[n, g] smooth (smoothstep) interpolation from a coarse grid of spacing `cell` pixels."""
  x = (np.arange(n) + 0.5) / cell
  i0 = np.floor(x).astype(int)
  f = x - i0
  f = f * f * (3 - 2 * f)
  m = np.zeros((n, g))
  m[np.arange(n), i0] = 1 - f
  m[np.arange(n), i0 + 1] = f
  return m


def _noise(rng, h: int, w: int, cell: float) -> np.ndarray:
  """Value noise in [0, 1], [h, w]."""
  grid = rng.random((int(math.ceil(h / cell)) + 2, int(math.ceil(w / cell)) + 2))
  return _interp_matrix(h, grid.shape[0], cell) @ grid @ _interp_matrix(w, grid.shape[1], cell).T


def _hsv(h, s, v) -> np.ndarray:
  return 255 * np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def _background(rng, size: int, margin: int, detail_strength: float = 1.0) -> np.ndarray:
  n = size + 2 * margin
  c1 = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.3, 0.75))
  c2 = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.3, 0.75))
  mix = _noise(rng, n, n, size / 2)[..., None]
  detail = 70 * (_noise(rng, n, n, max(2.0, size / 8)) - 0.5)
  fine = 30 * (_noise(rng, n, n, max(1.5, size / 16)) - 0.5)
  tex = c1 + mix * (c2 - c1) + detail_strength * (detail + fine)[..., None]
  return np.clip(tex, 0, 255).astype(np.float32)


def _appearance(rng, radius: float) -> dict:
  """Shape and texture of one object (identical distribution for actors and distractors)."""
  k = int(rng.integers(5, 8))
  vertices = rng.uniform(0.5, 1.0, k)
  vertices /= vertices.max()
  hue = rng.random()
  colors = np.stack(
    [
      _hsv(hue, rng.uniform(0.6, 1), rng.uniform(0.75, 1)),
      _hsv(hue + rng.uniform(0.25, 0.75), rng.uniform(0.5, 1), rng.uniform(0.3, 0.65)),
    ]
  )
  waves = np.stack(
    [
      rng.uniform((0.4, 0.9), (0.8, 1.8)),
      rng.uniform(0, 2 * np.pi, 2),
      rng.uniform(0, 2 * np.pi, 2),
    ],
    1,
  )
  spot_angle = rng.uniform(0, 2 * np.pi)
  spot = (0.5 * math.cos(spot_angle), 0.5 * math.sin(spot_angle), float(rng.choice([-1, 1])))
  return dict(
    radius=radius,
    angle=float(rng.uniform(0, 2 * np.pi)),
    vertices=vertices,
    colors=colors,
    waves=waves,
    spot=spot,
  )


def _actor(config: SyntheticConfig, rng, motion: str, duration: float) -> SceneObject:
  """An actor whose every parameter is drawn whatever `motion` is (a frame gives no hint)."""
  s = config.image_size
  radius = _uniform(rng, config.object_size, s / 2)
  look = _appearance(rng, radius)
  limit = s * (0.5 - _ROOM)  # farthest any part may get from the start centre, per axis
  speed = min(_uniform(rng, config.speed, s), (limit - radius) / duration)
  spin = _uniform(rng, config.rotation_speed, 2 * np.pi)
  rate = min(_uniform(rng, config.scale_rate), math.log(limit / radius) / duration)
  amplitude = min(_uniform(rng, config.oscillation_amplitude, s), limit - radius)
  frequency = _uniform(rng, config.oscillation_frequency)
  sign = float(rng.choice([-1.0, 1.0]))
  extent = radius + max(speed * duration, radius * math.expm1(rate * duration), amplitude)
  center = tuple(float(v) for v in rng.uniform(extent, s - extent, 2))
  return SceneObject(
    motion=motion,
    center=center,
    speed=speed,
    spin=spin,
    scale_rate=rate,
    amplitude=amplitude,
    frequency=frequency,
    sign=sign,
    **look,
  )


def _distractor(config: SyntheticConfig, rng, duration: float) -> SceneObject:
  s = config.image_size
  radius = _uniform(rng, config.object_size, s / 2)
  look = _appearance(rng, radius)
  limit = s * (0.5 - _ROOM)
  jitter = np.concatenate(
    [
      rng.uniform(*config.distractor_jitter, (3, 2)) * s,
      rng.uniform(1.5, 4.0, (3, 1)),
      rng.uniform(0, 2 * np.pi, (3, 2)),
    ],
    1,
  )
  shake = 2 * jitter[:, :2].sum(0).max()  # bound on |jitter offset| per axis
  speed = min(
    _uniform(rng, config.distractor_speed, s), max(0.0, (limit - radius - shake) / duration)
  )
  heading = rng.uniform(0, 2 * np.pi)
  drift = (speed * math.cos(heading), speed * math.sin(heading))
  extent = min(radius + speed * duration + shake, s / 2)
  center = tuple(float(v) for v in rng.uniform(extent, s - extent, 2))
  return SceneObject(motion=DISTRACTOR, center=center, drift=drift, jitter=jitter, **look)


def sample_scene(config: SyntheticConfig, seed: int, split: str, index: int) -> Scene:
  """The scene of video `index` of `split`: a pure function of (config, seed, split, index)."""
  _check_seed_index(seed, index)
  code = _split_code(split)
  rng = _rng(_TAG_SCENE, seed, code, index)
  fps = float(np.float32(round(rng.uniform(config.min_fps, config.max_fps), 2)))
  duration = float(rng.uniform(config.min_seconds, config.max_seconds))
  num_actors = int(rng.integers(config.min_actors, config.max_actors + 1))
  num_distractors = int(rng.integers(config.min_distractors, config.max_distractors + 1))
  s = config.image_size
  pan, margin = (0.0, 0.0), 0
  if config.camera_pan:
    speed, heading = _uniform(rng, config.pan_speed, s), rng.uniform(0, 2 * np.pi)
    pan = (speed * math.cos(heading), speed * math.sin(heading))
    margin = int(math.ceil(config.pan_speed[1] * s * config.max_seconds)) + 2
  background = _background(rng, s, margin, config.background_detail)
  depth = tuple(int(i) for i in rng.permutation(num_actors + num_distractors))
  motions = [config.classes[clip_label(config, seed, split, index)]]
  motions += [config.classes[int(i)] for i in rng.integers(0, len(config.classes), num_actors - 1)]
  objects = [
    _actor(config, _rng(_TAG_ACTOR, seed, code, index, a), motions[a], duration)
    for a in range(num_actors)
  ]
  objects += [
    _distractor(config, _rng(_TAG_DISTRACTOR, seed, code, index, d), duration)
    for d in range(num_distractors)
  ]
  return Scene(
    id=f"synthetic-{seed}-{split}-{index:07d}",
    image_size=s,
    fps=fps,
    duration=duration,
    classes=config.classes,
    num_actors=num_actors,
    objects=tuple(objects),
    depth=depth,
    background=background,
    pan=pan,
  )


# ------------------------------------------------------------------------------ render


@dataclasses.dataclass(eq=False)
class Video:
  """One rendered video and its ground truth (numpy)."""

  id: str
  frames: np.ndarray  # uint8 [N, H, W, 3]
  fps: float
  label: int  # class of actor 0
  label_text: str
  actor_boxes: np.ndarray  # float32 [N, A, 4] x1 y1 x2 y2 / image size
  actor_labels: np.ndarray  # int64 [N, A]
  object_boxes: np.ndarray  # float32 [N, O, 4], actors first, then distractors
  object_displacement: np.ndarray  # float32 [N, O, 2] centre motion (dx, dy) px to frame i+1
  flow: np.ndarray | None = None  # float32 [N-1, H, W, 2] forward flow (dx, dy) px

  @property
  def num_frames(self) -> int:
    return len(self.frames)


def _background_frames(scene: Scene, times: np.ndarray) -> np.ndarray:
  s, tex = scene.image_size, scene.background
  margin = (tex.shape[0] - s) // 2
  if scene.pan == (0.0, 0.0):
    return np.repeat(tex[None, margin : margin + s, margin : margin + s], len(times), 0)
  # Pixel j shows the texture at j + margin - pan * t (bilinear): content moves at `pan`.
  ox, oy = margin - scene.pan[0] * times, margin - scene.pan[1] * times
  ix, iy = np.floor(ox).astype(int), np.floor(oy).astype(int)
  fx, fy = (ox - ix)[:, None, None, None], (oy - iy)[:, None, None, None]
  r = np.arange(s + 1)
  win = tex[(iy[:, None] + r)[:, :, None], (ix[:, None] + r)[:, None, :]]
  top = win[:, :-1, :-1] * (1 - fx) + win[:, :-1, 1:] * fx
  bottom = win[:, 1:, :-1] * (1 - fx) + win[:, 1:, 1:] * fx
  return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _vertex_angles(count: int, k: int) -> np.ndarray:
  """Local angles of the first `count` vertices of a K-gon: -pi + 2 pi i / K."""
  return -np.pi + 2 * np.pi * np.arange(count) / k


def _flat_view(a: np.ndarray, channels: int) -> np.ndarray:
  """[..., C] float32 as a flat array of C-float records (fast np.take / np.put by pixel)."""
  return a.reshape(-1, channels).view(np.dtype((np.void, 4 * channels))).reshape(-1)


def _paint(canvas, flow, obj: SceneObject, centers, angles, scales):
  """Composites `obj` over `canvas` [N, S, S, 3]; where it is on top, writes its flow.

  The shape is evaluated on a square window per frame, the texture only where it covers pixels.
  """
  n, s = canvas.shape[:2]
  c, a, sc = centers[:n], angles[:n], scales[:n]
  half = int(math.ceil(obj.radius * sc.max())) + 2
  w = min(s, 2 * half)
  x0 = np.clip(np.floor(c[:, 0]).astype(int) - half, 0, s - w)
  y0 = np.clip(np.floor(c[:, 1]).astype(int) - half, 0, s - w)
  j = np.arange(w)
  dx = (x0[:, None] + j + 0.5 - c[:, :1]).astype(np.float32)  # [N, W] pixel centre - centre
  dy = (y0[:, None] + j + 0.5 - c[:, 1:]).astype(np.float32)
  cos = np.cos(a).astype(np.float32)[:, None, None]
  sin = np.sin(a).astype(np.float32)[:, None, None]
  size = (obj.radius * sc).astype(np.float32)  # px per local unit
  inv = (1 / size)[:, None, None]
  ux = (cos * dx[:, None, :] + sin * dy[:, :, None]) * inv  # local: vertices at radius <= 1
  uy = (cos * dy[:, :, None] - sin * dx[:, None, :]) * inv
  k = len(obj.vertices)
  sector = ((np.arctan2(uy, ux) + np.pi) * (k / (2 * np.pi))).astype(np.int32)
  np.minimum(sector, k - 1, out=sector)
  ang = _vertex_angles(k + 1, k)
  r = np.append(obj.vertices, obj.vertices[0])
  vx, vy = r * np.cos(ang), r * np.sin(ang)
  ex, ey = np.diff(vx), np.diff(vy)
  length = np.hypot(ex, ey)
  edges = np.take(
    np.stack([vx[:-1], vy[:-1], ex / length, ey / length], 1).astype(np.float32), sector, axis=0
  )
  # Signed distance (local units) to the sector's edge: > 0 inside the polygon.
  dist = edges[..., 2] * (uy - edges[..., 1]) - edges[..., 3] * (ux - edges[..., 0])
  alpha = dist * size[:, None, None] + 0.5  # anti-aliased edge, 1 px wide
  # From here on only the covered pixels, flattened: frame f, window row / column wr, wc.
  sel = np.flatnonzero(alpha > 0)
  f, rest = np.divmod(sel, w * w)
  wr, wc = np.divmod(rest, w)
  ux, uy, dist = np.take(ux, sel), np.take(uy, sel), np.take(dist, sel)
  alpha = np.minimum(np.take(alpha, sel), 1)
  tone = np.full(ux.shape, 0.5, np.float32)
  for (cycles, direction, phase), weight in zip(obj.waves, (0.25, 0.18)):
    tone += weight * np.sin(
      (2 * np.pi * cycles) * (ux * math.cos(direction) + uy * math.sin(direction)) + phase
    )
  sx, sy = ux - obj.spot[0], uy - obj.spot[1]
  spot = np.exp((sx * sx + sy * sy) * (-1 / (2 * 0.3**2)))
  tone = np.clip(tone + (0.6 * obj.spot[2]) * spot, 0, 1)
  shade = 0.35 + 0.65 * np.clip(dist * obj.radius - 1.0, 0, 1)  # dark rim, scales with the object
  # colour = shade * (c0 + tone (c1 - c0)); new = cur + alpha (colour - cur)
  weight = alpha * shade
  c0 = obj.colors[0].astype(np.float32)
  mix = weight[:, None] * c0 + (weight * tone)[:, None] * (obj.colors[1] - c0).astype(np.float32)
  flat = (f * s + np.take(y0, f) + wr) * s + np.take(x0, f) + wc
  pixels = _flat_view(canvas, 3)
  cur = np.take(pixels, flat).view(np.float32).reshape(mix.shape)
  new = cur * (1 - alpha)[:, None] + mix
  np.put(pixels, flat, _flat_view(np.ascontiguousarray(new, np.float32), 3))
  if flow is not None:
    # A point at p - c_i in frame i sits at c_{i+1} + (s_{i+1} / s_i) R(a_{i+1} - a_i)(p - c_i).
    da = np.diff(angles)[: n - 1]
    ratio = scales[1:n] / scales[: n - 1]
    rc = (ratio * np.cos(da) - 1).astype(np.float32)  # exactly 0 for a pure translation
    rs = (ratio * np.sin(da)).astype(np.float32)
    step = np.diff(centers, axis=0)[: n - 1].astype(np.float32)
    top = (alpha >= 0.5) & (f < n - 1)
    f, wr, wc = f[top], wr[top], wc[top]
    px, py = np.take(dx, f * w + wc), np.take(dy, f * w + wr)
    rc, rs = np.take(rc, f), np.take(rs, f)
    fxy = np.stack(
      [np.take(step[:, 0], f) + (rc * px - rs * py), np.take(step[:, 1], f) + (rs * px + rc * py)],
      -1,
    )
    np.put(_flat_view(flow, 2), np.take(flat, np.flatnonzero(top)), _flat_view(fxy, 2))


def _boxes(obj: SceneObject, centers, angles, scales) -> np.ndarray:
  """Tight x1 y1 x2 y2 boxes in px [T, 4] of the polygon."""
  k = len(obj.vertices)
  ang = angles[:, None] + _vertex_angles(k, k)
  rad = obj.radius * scales[:, None] * obj.vertices
  x = centers[:, :1] + rad * np.cos(ang)
  y = centers[:, 1:] + rad * np.sin(ang)
  return np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], -1)


def render_scene(scene: Scene, *, fps: float | None = None, with_flow: bool = False) -> Video:
  """Renders `scene` at its native fps, or at `fps` (same motion in time, other frame count)."""
  if fps is not None and not float(fps) > 0:
    raise ValueError(f"fps must be > 0, got {fps!r}")
  fps = float(scene.fps if fps is None else fps)
  n, s = scene.num_frames(fps), scene.image_size
  times = np.arange(n + 1) / fps
  centers, angles, scales = scene.poses(times)
  canvas = _background_frames(scene, times[:n])
  flow = None
  if with_flow:
    flow = np.empty((n - 1, s, s, 2), np.float32)
    flow[:] = (np.diff(times)[: n - 1, None] * np.asarray(scene.pan))[:, None, None, :]
  for o in scene.depth:
    _paint(canvas, flow, scene.objects[o], centers[:, o], angles[:, o], scales[:, o])
  frames = np.add(canvas, 0.5, out=canvas).astype(np.uint8)  # values stay within [0, 255]
  boxes = (
    np.stack(
      [
        _boxes(o, centers[:n, i], angles[:n, i], scales[:n, i]) for i, o in enumerate(scene.objects)
      ],
      1,
    )
    / s
  )
  labels = scene.labels()
  a = scene.num_actors
  return Video(
    id=scene.id,
    frames=frames,
    fps=fps,
    label=labels[0],
    label_text=scene.classes[labels[0]],
    actor_boxes=boxes[:, :a].astype(np.float32),
    actor_labels=np.tile(np.asarray(labels, np.int64), (n, 1)),
    object_boxes=boxes.astype(np.float32),
    object_displacement=np.diff(centers, axis=0).astype(np.float32),
    flow=flow,
  )


def render_video(
  config: SyntheticConfig,
  seed: int,
  split: str,
  index: int,
  *,
  with_flow: bool = False,
  fps: float | None = None,
) -> Video:
  """Video `index` of `split`; `fps` renders the same scene at another frame rate."""
  return render_scene(sample_scene(config, seed, split, index), fps=fps, with_flow=with_flow)


# ------------------------------------------------------------------------------ records


def encode_jpeg(frames: np.ndarray, quality: int = 90) -> list[bytes]:
  """Per-frame JPEG (Pillow, 4:4:4 chroma) of uint8 [N, H, W, 3]."""
  from PIL import Image

  frames = np.asarray(frames, np.uint8)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"frames must be uint8 [N, H, W, 3], got shape {frames.shape}")
  image = Image.new("RGB", (frames.shape[2], frames.shape[1]))  # reused: faster than fromarray
  out = []
  for frame in frames:
    image.frombytes(frame.tobytes())
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, subsampling=0)
    out.append(buf.getvalue())
  return out


def _compress(video: Video, jpeg_quality: int) -> Video:
  """`video` with `frames` replaced by a list of JPEG bytes (what a worker sends back)."""
  return dataclasses.replace(video, frames=encode_jpeg(video.frames, jpeg_quality), flow=None)


def _serialize(video: Video, height: int, width: int) -> bytes:
  from mgvm.data import format as fmt

  n = len(video.frames)
  return fmt.encode_example(
    video_id=video.id,
    fps=video.fps,
    jpeg_frames=video.frames,
    height=height,
    width=width,
    label=video.label,
    label_text=video.label_text,
    annotations={
      fmt.REGION_BBOX: video.actor_boxes.reshape(n, -1),
      fmt.REGION_LABEL: video.actor_labels,
      fmt.OBJECT_BBOX: video.object_boxes.reshape(n, -1),
      fmt.OBJECT_DISPLACEMENT: video.object_displacement.reshape(n, -1),
    },
  )


def encode_video(video: Video, *, jpeg_quality: int = 90) -> bytes:
  """The video as a serialised `SequenceExample` in `mgvm.data.format` (imports TensorFlow)."""
  _, h, w, _ = video.frames.shape
  return _serialize(_compress(video, jpeg_quality), h, w)


def _render_compressed(task) -> Video:
  """Worker: renders and JPEG-encodes one video (no TensorFlow in the workers)."""
  config, seed, split, index = task
  return _compress(render_video(config, seed, split, index), config.jpeg_quality)


def shard_name(split: str, shard: int, num_shards: int) -> str:
  return f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"


def check_splits(splits: Mapping[str, int]) -> dict[str, int]:
  """`splits` as {name: count}; ValueError naming a bad name or count."""
  if not splits:
    raise ValueError("splits is empty")
  out = {}
  for name, count in splits.items():
    _split_code(name)
    if int(count) != count or count < 0:
      raise ValueError(f"split {name!r}: count must be an int >= 0, got {count!r}")
    out[name] = int(count)
  return out


def _fps_histogram(fps: Sequence[float]) -> dict[str, int]:
  counts: dict[str, int] = {}
  for f in sorted(fps):
    lo = int(f // 10) * 10
    key = f"{lo}-{lo + 10}"
    counts[key] = counts.get(key, 0) + 1
  return counts


def _identity(config: SyntheticConfig, splits: Mapping[str, int], seed: int) -> dict:
  return {
    "version": VERSION,
    "config": config.to_dict(),
    "seed": int(seed),
    "counts": dict(sorted(splits.items())),
  }


def write_dataset(
  out_dir: str,
  config: SyntheticConfig | None = None,
  *,
  splits: Mapping[str, int] | None = None,
  seed: int = 0,
  videos_per_shard: int = 256,
  workers: int | None = None,
) -> dict:
  """Renders and writes the splits as TFRecord shards plus `dataset_info.json`; returns the info.

  Each record's bytes depend only on (config, seed, split, index); shard boundaries only on the
  split size and `videos_per_shard`. `workers` processes render in parallel (default: all CPUs).
  """
  config = config or SyntheticConfig()
  splits = check_splits(DEFAULT_SPLITS if splits is None else splits)
  _check_seed_index(seed, 0)
  if int(videos_per_shard) != videos_per_shard or videos_per_shard < 1:
    raise ValueError(f"videos_per_shard must be an int >= 1, got {videos_per_shard!r}")
  import tensorflow as tf

  start = time.perf_counter()
  os.makedirs(out_dir, exist_ok=True)
  info_path = os.path.join(out_dir, INFO_FILE)
  if os.path.exists(info_path):
    os.remove(info_path)  # no info while the shards are incomplete
  for tmp in glob.glob(os.path.join(out_dir, ".*.tfrecord.tmp")):
    os.remove(tmp)  # left by an interrupted run
  tasks = [(config, seed, split, i) for split, n in splits.items() for i in range(n)]
  workers = (os.cpu_count() or 1) if workers is None else int(workers)
  pool = None
  if workers > 1 and len(tasks) > 4:
    pool = processes.pool(workers)  # workers need numpy and Pillow only
    results = pool.imap(
      _render_compressed, tasks, chunksize=max(1, min(16, len(tasks) // (8 * workers)))
    )
  else:
    results = map(_render_compressed, tasks)
  info = {
    "name": "mgvm_synthetic",
    **_identity(config, splits, seed),
    "classes": list(config.classes),
    "splits": {},
  }
  all_fps = []
  try:
    for split, n in splits.items():
      num_shards = max(1, math.ceil(n / videos_per_shard)) if n else 0
      bounds = [round(k * n / num_shards) for k in range(num_shards + 1)] if n else [0]
      files, fps, frames, counts = [], [], 0, [0] * len(config.classes)
      for shard in range(num_shards):
        name = shard_name(split, shard, num_shards)
        tmp = os.path.join(out_dir, f".{name}.tmp")
        with tf.io.TFRecordWriter(tmp) as writer:
          for _ in range(bounds[shard], bounds[shard + 1]):
            video = next(results)
            writer.write(_serialize(video, config.image_size, config.image_size))
            frames += len(video.frames)
            fps.append(video.fps)
            counts[video.label] += 1
        os.replace(tmp, os.path.join(out_dir, name))
        files.append(name)
      for stale in glob.glob(os.path.join(out_dir, f"{split}-[0-9]*-of-[0-9]*.tfrecord")):
        if os.path.basename(stale) not in files:
          os.remove(stale)
      info["splits"][split] = {
        "num_videos": n,
        "num_frames": frames,
        "files": files,
        "label_counts": counts,
        "fps_histogram": _fps_histogram(fps),
      }
      all_fps += fps
  finally:
    if pool is not None:
      pool.terminate()
      pool.join()
  info["fps_histogram"] = _fps_histogram(all_fps)
  info["seconds"] = round(time.perf_counter() - start, 3)
  tmp = info_path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(info, f, indent=1)
  os.replace(tmp, info_path)
  return info


def read_info(out_dir: str) -> dict | None:
  """The stored `dataset_info.json`, or None when there is none."""
  path = os.path.join(out_dir, INFO_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def ensure_dataset(
  out_dir: str,
  config: SyntheticConfig | None = None,
  *,
  splits: Mapping[str, int] | None = None,
  seed: int = 0,
  log: Callable[[str], object] | None = print,
  workers: int | None = None,
  videos_per_shard: int = 256,
) -> dict:
  """Returns the stored info when `out_dir` holds this exact data set, else writes it first."""
  config = config or SyntheticConfig()
  splits = check_splits(DEFAULT_SPLITS if splits is None else splits)
  log = log or (lambda _: None)
  info = read_info(out_dir)
  want = _identity(config, splits, seed)
  if (
    info is not None
    and {k: info.get(k) for k in want} == want
    and all(
      os.path.exists(os.path.join(out_dir, f)) for s in info["splits"].values() for f in s["files"]
    )
  ):
    log(f"synthetic data: reusing {out_dir} ({_summary(info)})")
    return info
  log(f"synthetic data: generating {sum(splits.values())} videos in {out_dir}")
  info = write_dataset(
    out_dir, config, splits=splits, seed=seed, workers=workers, videos_per_shard=videos_per_shard
  )
  log(f"synthetic data: wrote {_summary(info)} in {info['seconds']:.1f} s")
  return info


def split_files(out_dir: str, split: str) -> list[str]:
  """Shard paths of `split`, from `dataset_info.json` when present, else by file name."""
  info = read_info(out_dir)
  if info is not None:
    if split not in info["splits"]:
      raise KeyError(f"no split {split!r} in {out_dir}; splits: {sorted(info['splits'])}")
    files = [os.path.join(out_dir, f) for f in info["splits"][split]["files"]]
  else:
    files = sorted(glob.glob(os.path.join(out_dir, f"{split}-[0-9]*-of-[0-9]*.tfrecord")))
  if not files:
    raise FileNotFoundError(f"no shards for split {split!r} in {out_dir}")
  return files


def _summary(info: dict) -> str:
  parts = [f"{k} {v['num_videos']}" for k, v in info["splits"].items()]
  frames = sum(v["num_frames"] for v in info["splits"].values())
  return f"{', '.join(parts)} videos, {frames} frames"


def main(argv: Sequence[str] | None = None) -> dict:
  """CLI: `python -m mgvm.data.synthetic --out DIR [--train N ...]`."""
  d = SyntheticConfig()
  p = argparse.ArgumentParser(
    prog="python -m mgvm.data.synthetic", description=__doc__.split("\n")[0]
  )
  p.add_argument("--out", required=True, help="output directory")
  for split, n in DEFAULT_SPLITS.items():
    p.add_argument(f"--{split}", type=int, default=n, help=f"videos in {split} ({n})")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
  p.add_argument("--videos-per-shard", type=int, default=256)
  for name in (
    "image_size",
    "min_seconds",
    "max_seconds",
    "min_fps",
    "max_fps",
    "min_actors",
    "max_actors",
    "min_distractors",
    "max_distractors",
    "jpeg_quality",
  ):
    value = getattr(d, name)
    p.add_argument(
      "--" + name.replace("_", "-"), type=type(value), default=value, help=f"default {value}"
    )
  p.add_argument("--camera-pan", action="store_true", help="pan the background")
  args = p.parse_args(argv)
  config = SyntheticConfig(
    image_size=args.image_size,
    min_seconds=args.min_seconds,
    max_seconds=args.max_seconds,
    min_fps=args.min_fps,
    max_fps=args.max_fps,
    min_actors=args.min_actors,
    max_actors=args.max_actors,
    min_distractors=args.min_distractors,
    max_distractors=args.max_distractors,
    camera_pan=args.camera_pan,
    jpeg_quality=args.jpeg_quality,
  )
  splits = {s: getattr(args, s) for s in DEFAULT_SPLITS}
  info = write_dataset(
    args.out,
    config,
    splits=splits,
    seed=args.seed,
    videos_per_shard=args.videos_per_shard,
    workers=args.workers,
  )
  print(f"wrote {_summary(info)} to {args.out} in {info['seconds']:.1f} s")
  return info


if __name__ == "__main__":
  main()
