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
