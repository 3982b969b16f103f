"""Test videos written with PyAV: each frame's index drawn as 8 black/white bars (its bits)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

H, W = 64, 128


def frame_with_index(index: int) -> np.ndarray:
  img = np.zeros((H, W, 3), np.uint8)
  for bit in range(8):
    if (index >> bit) & 1:
      img[:, 16 * bit : 16 * bit + 16] = 255
  return img


def index_of(img: np.ndarray) -> int:
  w = img.shape[1] // 8
  return sum(1 << b for b in range(8) if img[:, w * b : w * b + w].mean() > 128)


def write_video(path, n, rate, codec="libx264", times=None):
  with av.open(str(path), "w") as container:
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    if times is not None:  # variable frame rate: explicit millisecond timestamps
      stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
    for i in range(n):
      frame = av.VideoFrame.from_ndarray(frame_with_index(i), format="rgb24")
      if times is not None:
        frame.pts, frame.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return str(path)


# Planted motion: a textured square moving at a known velocity over a textured, panning
# background (content moves right / down for positive values), for the codec motion vectors.
MH, MW, SQUARE = 48, 64, 32
SQUARE_START = (4, 8)  # x, y of the square's top-left corner in frame 0
_MARGIN = 40


def _texture(h, w, seed):
  """Blocky random texture (4 px cells, softened): motion search locks onto it."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (h // 4 + 2, w // 4 + 2, 3)).astype(np.float64)
  img = np.kron(coarse, np.ones((4, 4, 1)))[: h + 2, : w + 2]
  img = sum(img[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9
  return img.astype(np.uint8)


_BACKGROUND = _texture(MH + 2 * _MARGIN, MW + 2 * _MARGIN, 1)
_SQUARE = _texture(SQUARE, SQUARE, 2)


def square_box(i, velocity):
  """x0, y0, x1, y1 (px) of the square in frame i."""
  x0, y0 = SQUARE_START[0] + velocity[0] * i, SQUARE_START[1] + velocity[1] * i
  return x0, y0, x0 + SQUARE, y0 + SQUARE


def moving_square_frame(i, velocity=(2, 0), pan=(1, 0)):
  """Frame i: the background moved by i·pan, the square by i·velocity (integer px)."""
  oy, ox = _MARGIN - pan[1] * i, _MARGIN - pan[0] * i
  img = _BACKGROUND[oy : oy + MH, ox : ox + MW].copy()
  x0, y0, x1, y1 = square_box(i, velocity)
  cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, MW), min(y1, MH)
  if cx1 > cx0 and cy1 > cy0:
    img[cy0:cy1, cx0:cx1] = _SQUARE[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
  return img


def write_moving_square(
  path, n=10, rate=25, codec="libx264", velocity=(2, 0), pan=(1, 0), options=None
):
  """A `moving_square_frame` video; `options`: the encoder's (e.g. libx264's x264-params)."""
  with av.open(str(path), "w") as container:
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = MW, MH, "yuv420p"
    if options:
      stream.codec_context.options = dict(options)
    for i in range(n):
      frame = av.VideoFrame.from_ndarray(moving_square_frame(i, velocity, pan), format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return str(path)
