"""Rendering a synthetic scene: frames, boxes, object motion and (optionally) exact optical flow.

Pixel (row r, column c) covers [c, c+1] x [r, r+1]; boxes are x1 y1 x2 y2 divided by the image
size (docs/synthetic.md).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mgvm.datasets.synthetic.config import SyntheticConfig
from mgvm.datasets.synthetic.scene import Scene, SceneObject, sample_scene


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


def _inside(obj: SceneObject, center, angle: float, scale: float, x, y) -> np.ndarray:
  """Whether points (x, y) px lie inside the polygon at one pose (`_paint`'s alpha >= 0.5)."""
  dx, dy = np.asarray(x, np.float64) - center[0], np.asarray(y, np.float64) - center[1]
  size = obj.radius * scale
  ux = (math.cos(angle) * dx + math.sin(angle) * dy) / size
  uy = (math.cos(angle) * dy - math.sin(angle) * dx) / size
  k = len(obj.vertices)
  sector = np.minimum(((np.arctan2(uy, ux) + np.pi) * (k / (2 * np.pi))).astype(np.int64), k - 1)
  ang = _vertex_angles(k + 1, k)
  r = np.append(obj.vertices, obj.vertices[0])
  vx, vy = r * np.cos(ang), r * np.sin(ang)
  ex, ey = np.diff(vx), np.diff(vy)
  length = np.hypot(ex, ey)
  dist = (ex / length)[sector] * (uy - vy[:-1][sector]) - (ey / length)[sector] * (
    ux - vx[:-1][sector]
  )
  return dist >= 0


def covering_objects(scene: Scene, times, x, y) -> np.ndarray:
  """int [T, P]: the top-most object covering each point (x, y) px at `times` (s), -1 for none
  (the background); the object whose motion a pixel there shows."""
  times = np.atleast_1d(np.asarray(times, np.float64))
  centers, angles, scales = scene.poses(times)
  x, y = np.ravel(x), np.ravel(y)
  out = np.full((len(times), len(x)), -1, np.int64)
  for o in scene.depth:  # painting order, bottom first: later objects cover earlier ones
    for t in range(len(times)):
      inside = _inside(scene.objects[o], centers[t, o], angles[t, o], scales[t, o], x, y)
      out[t, inside] = o
  return out


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
