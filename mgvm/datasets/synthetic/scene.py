"""Scenes of the synthetic set: what moves where, drawn from (seed, split, index) (docs/synthetic.md).

Motion is a function of continuous time t = frame / fps, with speeds in pixels per second, so
every native frame rate shows the same motion. Appearance, size and start position never depend
on the class. Coordinates: x to the right, y down; video i of split s depends only on
(seed, s, i).
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
import re
import zlib

import numpy as np

from mgvm.datasets.synthetic.config import CLASSES, DISTRACTOR, SyntheticConfig

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


def _background(
  rng, size: int, margin: int, detail_strength: float = 1.0, pattern: str = "noise"
) -> np.ndarray:
  n = size + 2 * margin
  if pattern == "gratings":
    return _gratings(rng, size, n)
  c1 = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.3, 0.75))
  c2 = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.3, 0.75))
  mix = _noise(rng, n, n, size / 2)[..., None]
  detail = 70 * (_noise(rng, n, n, max(2.0, size / 8)) - 0.5)
  fine = 30 * (_noise(rng, n, n, max(1.5, size / 16)) - 0.5)
  tex = c1 + mix * (c2 - c1) + detail_strength * (detail + fine)[..., None]
  return np.clip(tex, 0, 255).astype(np.float32)


def _gratings(rng, size: int, n: int) -> np.ndarray:
  """[n, n, 3]: a dark and a light muted colour mixed by the mean of two sinusoidal gratings
  (orientation uniform, period size/5 to size/2.5 px, phase uniform): every patch a smooth,
  high-contrast piece of a pattern its neighbours continue."""
  dark = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.2, 0.4))
  light = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.6, 0.8))
  y, x = np.mgrid[0:n, 0:n].astype(np.float64) + 0.5
  mix = np.zeros((n, n))
  for _ in range(2):
    angle, period = rng.uniform(0, np.pi), rng.uniform(size / 5, size / 2.5)
    phase = rng.uniform(0, 2 * np.pi)
    mix += np.sin(2 * np.pi * (x * math.cos(angle) + y * math.sin(angle)) / period + phase)
  mix = (0.5 + 0.25 * mix)[..., None]  # in [0, 1]
  return np.clip(dark + mix * (light - dark), 0, 255).astype(np.float32)


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
  background = _background(rng, s, margin, config.background_detail, config.background_pattern)
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
