"""The codec's motion field of a video: the decoder's motion vectors on a fixed block grid.

FFmpeg exports the motion vectors of H.264, MPEG-1/2, MPEG-4 Part 2, MS-MPEG4 and H.263 when
`flags2=+export_mvs` is set before decoding (`frame.side_data` MOTION_VECTORS; measured with
PyAV 18.1: HEVC, VP8, VP9, AV1 and MJPEG export none). Each vector (FFmpeg's AVMotionVector)
covers a `w`×`h` block centred on (`dst_x`, `dst_y`) of the frame and points to where its
content is in a reference frame: `src = dst + motion / motion_scale`, with `source` < 0 for a
past reference and > 0 for a future one.

**The field** (docs/data.md, "Codec motion vectors"; `mgvm.data.format` stores it): for each
stored frame and each `block`×`block` cell of the stored frame (gh = ceil(H / block) rows,
gw = ceil(W / block) columns, in stored pixels), (dx, dy) = the pixels the cell's content moved
from the previous stored frame to this one: content at p here was at p − (dx, dy) there.

- Per decoded frame, a cell's value is the area-weighted mean, over the part of the cell that
  vectors cover, of each vector's displacement per frame: −(motion / scale) / d for a past
  reference d frames back, +(motion / scale) / d for a future one d frames ahead (B-frames:
  the forward and backward vectors of a block both count). FFmpeg gives only the direction, so
  d is the **anchor distance** in display order: P- and I-frames are anchors; a P-frame's
  past reference is the previous anchor, a B-frame's the previous anchor and its future
  reference the next anchor. This is exact for IPPP… with one reference frame (the transcode
  settings below) and for the classic IBBP… of MPEG-1/2/4; with H.264 multi-reference
  P-frames or B-pyramids (referenced B-frames) it is an approximation (docs give the error).
- FFmpeg exports both directions of an H.264 B-macroblock for each of its partitions, also
  where a partition predicts from one list only: the unused list's vector is (0, 0). A zero
  vector whose block (same place and size) also has a nonzero vector in the other direction is
  therefore dropped (a genuine bi-prediction static against one reference and moving against
  the other does not occur with smooth motion).
- Vectors are scaled by the resize (`short_side`): stored = source · (W' / W, H' / H).
- `valid` is 1 where at least one vector covered part of the cell.
- **Gap rule**: an I-frame has no vectors: it takes the previous decoded frame's field, marked
  invalid (motion is smooth in time; zeros there would read as "stopped"). Cells no vector
  covers in P/B-frames (intra blocks, and frames without any vectors) are 0 and invalid. The
  first stored frame has no previous stored frame: 0, invalid.
- **Resampling** (`max_fps`, or a variable-rate file): the field of a stored frame is the sum of
  the fields of the source frames since the previous stored frame (chained displacement
  approximated by the sum), valid where all of them are; a stored frame repeating the previous
  one (a variable-rate file resampled upwards) gets 0, valid.
- `frame_types`: the picture type of the decoded frame each stored frame shows
  (`format.FRAME_TYPES`: I 0, P 1, B 2, other 3); with a transcode, of the H.264 re-encode.

**Transcode**: a codec that exports no vectors is re-encoded to H.264 in memory at the stored
size (libx264 through PyAV, `X264_OPTIONS`: preset veryfast, crf 18, fixed GOP of 250, no
B-frames, one reference frame, one thread so the bytes do not depend on the machine), and the
field is read from that (`encoder_options`: on a CPU with AVX-512, libx264's assembly is capped
at AVX2, since its AVX-512 code gives other bytes for the same frames in some encodes:
docs/data.md); the stored frames still come from the source. `transcode`: "auto" (only when the
codec exports none), "always", "never" (a video without vectors is skipped with
reason `no_motion_vectors`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from fractions import Fraction

import numpy as np

# Decoders measured to export vectors (PyAV 18.1 / FFmpeg 8): every other codec is transcoded.
EXPORTING_CODECS = frozenset(
  {"h264", "mpeg1video", "mpeg2video", "mpeg4", "msmpeg4", "msmpeg4v2", "h263"}
)
TRANSCODE_MODES = ("auto", "always", "never")
X264_OPTIONS = {
  "preset": "veryfast",
  "crf": "18",
  "threads": "1",
  "x264-params": "keyint=250:min-keyint=250:scenecut=0:bframes=0:ref=1",
}
# libx264's AVX-512 assembly (core 165) encodes the same frames to other bytes in 5-12 % of
# encodes (its macroblock-tree rate control: the spread goes with mbtree=0 or rc-lookahead=0).
# Capped at AVX2, every encode gives one stream, that of AVX and SSE4.2 too: docs/data.md.
X264_CPU_CAP = "AVX2"
_TIME_BASE = Fraction(1, 25)  # of the in-memory re-encode (its timestamps are frame numbers)
_I, _P, _B, _OTHER = 0, 1, 2, 3  # format.FRAME_TYPES
_PICT_TYPES = {1: _I, 2: _P, 3: _B}  # AVPictureType: I 1, P 2, B 3
_MAX_PENDING = 64  # B-frames held for their future anchor before giving up on it


@dataclasses.dataclass(frozen=True)
class MotionSettings:
  """What `decode.decode(..., motion=)` extracts: the cell side and the transcode rule."""

  block: int = 16
  transcode: str = "auto"

  def __post_init__(self):
    if int(self.block) != self.block or self.block < 1:
      raise ValueError(f"motion block must be an int >= 1 px, got {self.block!r}")
    if self.transcode not in TRANSCODE_MODES:
      raise ValueError(
        f"transcode must be one of {', '.join(TRANSCODE_MODES)}, got {self.transcode!r}"
      )


@dataclasses.dataclass(eq=False)
class Field:
  """The motion field of the stored frames (module docstring)."""

  vectors: np.ndarray  # float32 [N, gh, gw, 2] (dx, dy) stored px from the previous frame
  valid: np.ndarray  # bool [N, gh, gw]
  frame_types: np.ndarray  # int64 [N] format.FRAME_TYPES
  block: int
  codec: str = ""  # the decoder the vectors came from
  transcoded: bool = False

  def as_format(self) -> dict:
    """The `motion` argument of `mgvm.data.format.encode_example`."""
    return dict(
      vectors=self.vectors, valid=self.valid, frame_types=self.frame_types, block=self.block
    )


def grid_shape(height: int, width: int, block: int) -> tuple[int, int]:
  """(gh, gw) = (ceil(H / block), ceil(W / block)) for a stored frame of H × W pixels."""
  return -(-int(height) // block), -(-int(width) // block)


def frame_type(frame) -> int:
  """The frame's picture type as `format.FRAME_TYPES` (I 0, P 1, B 2, other 3)."""
  return _PICT_TYPES.get(int(frame.pict_type or 0), _OTHER)


def cpu_feature(name: str) -> bool | None:
  """Whether this CPU (and OS) runs the instruction set `name` ("AVX512F", "AVX2", "SSE42": NumPy's
  names), by NumPy's runtime CPU detection; None where this NumPy does not say."""
  try:
    from numpy._core._multiarray_umath import __cpu_features__ as features
  except ImportError:
    return None
  return bool(features.get(name, False))


def _cpuinfo_flags() -> set[str]:
  """The CPU flags Linux's /proc/cpuinfo lists (empty where there is none)."""
  try:
    with open("/proc/cpuinfo") as f:
      return next(
        (set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set()
      )
  except OSError:
    return set()


@functools.lru_cache(maxsize=None)
def has_avx512() -> bool:
  """Whether this CPU (and OS) runs AVX-512F: `cpu_feature`, else Linux's /proc/cpuinfo; False
  where neither says."""
  found = cpu_feature("AVX512F")
  return found if found is not None else "avx512f" in _cpuinfo_flags()


def encoder_options(options: dict) -> dict:
  """libx264 `options` with its assembly capped at `X264_CPU_CAP` on a CPU with AVX-512 (module
  docstring); options that already name `asm` in `x264-params` are the caller's choice."""
  out = dict(options)
  params = out.get("x264-params", "")
  if not has_avx512() or re.search(r"(^|:)(no-)?asm(=|:|$)", params):
    return out
  out["x264-params"] = f"{params}:asm={X264_CPU_CAP}" if params else f"asm={X264_CPU_CAP}"
  return out


def enable_export(codec_context) -> None:
  """Asks the decoder for motion vectors (before its first frame is decoded)."""
  options = dict(codec_context.options or {})
  options["flags2"] = "+export_mvs"
  codec_context.options = options


def frame_vectors(frame) -> np.ndarray | None:
  """The frame's exported vectors as a structured array (AVMotionVector fields), or None."""
  side = frame.side_data.get("MOTION_VECTORS")
  if side is None or len(side) == 0:
    return None
  return np.array(side.to_ndarray(), copy=True)


def drop_unused_list(vectors: np.ndarray) -> np.ndarray:
  """`vectors` without the (0, 0) ones FFmpeg exports for a partition's unused list: a zero
  vector whose block also has a nonzero vector in the other direction."""
  v = vectors
  zero = (v["motion_x"] == 0) & (v["motion_y"] == 0)
  back = v["source"] < 0
  if not zero.any() or back.all() or not back.any():  # P-frames: one direction only
    return v
  key = (
    ((v["dst_x"].astype(np.int64) + 32768) << 32)
    | ((v["dst_y"].astype(np.int64) + 32768) << 16)
    | (v["w"].astype(np.int64) << 8)
    | v["h"].astype(np.int64)
  )
  _, block = np.unique(key, return_inverse=True)
  moving_back = np.bincount(block, ~zero & back) > 0  # per block: a nonzero past vector
  moving_ahead = np.bincount(block, ~zero & ~back) > 0
  unused = zero & np.where(back, moving_ahead[block], moving_back[block])
  return v[~unused] if unused.any() else v


def rasterise(
  vectors: np.ndarray,
  source_size: tuple[int, int],
  stored_size: tuple[int, int],
  block: int,
  *,
  past: float = 1.0,
  future: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
  """One frame's vectors → (field float32 [gh, gw, 2], valid bool [gh, gw]) on the stored grid.

  `source_size` (H, W): the frame the vectors belong to; `stored_size`: the stored frame whose
  `block`-pixel cells make the grid. `past` / `future`: frames to the past / future reference.
  A cell holds the area-weighted mean displacement of the vectors' blocks covering it (module
  docstring); cells no block covers are 0, invalid.
  """
  h, w = source_size
  hs, ws = stored_size
  gh, gw = grid_shape(hs, ws, block)
  fx, fy = ws / w, hs / h  # stored px per source px
  v = drop_unused_list(vectors)
  half_w, half_h = v["w"].astype(np.float64) / 2, v["h"].astype(np.float64) / 2
  cx, cy = v["dst_x"].astype(np.float64), v["dst_y"].astype(np.float64)
  x0, x1 = np.clip(cx - half_w, 0, w) * fx, np.clip(cx + half_w, 0, w) * fx
  y0, y1 = np.clip(cy - half_h, 0, h) * fy, np.clip(cy + half_h, 0, h) * fy
  scale = np.maximum(v["motion_scale"].astype(np.float64), 1)
  back = v["source"] < 0
  per_frame = np.where(back, -1.0 / past, 1.0 / future) / scale
  dx = v["motion_x"] * per_frame * fx
  dy = v["motion_y"] * per_frame * fy
  keep = (x1 > x0) & (y1 > y0)
  x0, x1, y0, y1, dx, dy = (a[keep] for a in (x0, x1, y0, y1, dx, dy))
  area = np.zeros(gh * gw)
  sums = np.zeros((2, gh * gw))
  if len(x0):
    c0 = np.floor(x0 / block).astype(np.int64)
    r0 = np.floor(y0 / block).astype(np.int64)
    span_c = int((np.ceil(x1 / block) - c0).max())
    span_r = int((np.ceil(y1 / block) - r0).max())
    for a in range(span_r):
      r = r0 + a
      oy = np.minimum(y1, np.minimum((r + 1) * block, hs)) - np.maximum(y0, r * block)
      for b in range(span_c):
        c = c0 + b
        ox = np.minimum(x1, np.minimum((c + 1) * block, ws)) - np.maximum(x0, c * block)
        overlap = np.clip(oy, 0, None) * np.clip(ox, 0, None)
        m = (overlap > 0) & (r < gh) & (c < gw)
        if not m.any():
          continue
        cell, weight = (r * gw + c)[m], overlap[m]
        area += np.bincount(cell, weight, gh * gw)
        sums[0] += np.bincount(cell, weight * dx[m], gh * gw)
        sums[1] += np.bincount(cell, weight * dy[m], gh * gw)
  valid = area > 0
  field = np.zeros((gh * gw, 2))
  field[valid] = (sums[:, valid] / area[valid]).T
  return field.reshape(gh, gw, 2).astype(np.float32), valid.reshape(gh, gw)


class FieldBuilder:
  """Per-frame fields of the decoded frames (fed in display order) → the stored frames' field.

  `picked[j]`: the decoded frame (display-order index) stored frame j shows (`decode`'s
  constant-rate grid); `stored_size` (H, W) the stored frames' size.
  """

  def __init__(self, picked, stored_size: tuple[int, int], block: int):
    self.picked = np.asarray(picked, np.int64)
    self.stored_size = tuple(int(s) for s in stored_size)
    self.block = int(block)
    n = len(self.picked)
    gh, gw = grid_shape(*self.stored_size, self.block)
    self.sums = np.zeros((n, gh, gw, 2), np.float32)
    self.valid = np.ones((n, gh, gw), bool)
    self.valid[:1] = False  # the first stored frame has no previous one
    self.types = np.full(n, _OTHER, np.int64)
    self.count = 0  # decoded frames seen
    self.frames_with_vectors = 0
    self._last = int(self.picked[-1]) if n else -1
    self._pending: list[tuple] = []  # B-frames waiting for their future anchor
    self._anchor: int | None = None
    self._previous = np.zeros((gh, gw, 2), np.float32)

  def add(self, frame) -> None:
    """The next decoded frame, in display order (an `av.VideoFrame` with its side data)."""
    k = self.count
    self.count += 1
    kind = frame_type(frame)
    if k > self._last and (kind == _B or not self._pending):
      return  # past the last stored frame and no B-frame waits for it as its anchor
    item = (k, kind, frame_vectors(frame), (frame.height, frame.width))
    if kind == _B:
      self._pending.append(item)
      if len(self._pending) > _MAX_PENDING:  # no anchor in sight: assume the next frame
        self._flush(None)
      return
    self._flush(k)
    if k <= self._last:
      past = k - self._anchor if self._anchor is not None else 1
      self._frame(item, past, 1)
    self._anchor = k

  def finish(self, codec: str = "", transcoded: bool = False) -> Field:
    """The field of the stored frames (after the last decoded frame was added)."""
    self._flush(None)
    return Field(
      vectors=self.sums,
      valid=self.valid,
      frame_types=self.types,
      block=self.block,
      codec=codec,
      transcoded=transcoded,
    )

  def _flush(self, anchor: int | None) -> None:
    for item in self._pending:
      k = item[0]
      past = k - self._anchor if self._anchor is not None else 1
      self._frame(item, past, anchor - k if anchor is not None else 1)
    self._pending = []

  def _frame(self, item, past: int, future: int) -> None:
    k, kind, vectors, size = item
    if k > self._last:
      return
    if kind == _I:  # gap rule: the previous frame's field, invalid
      field, ok = self._previous, np.zeros(self._previous.shape[:2], bool)
    elif vectors is None:  # all intra (or nothing exported): 0, invalid
      field, ok = np.zeros_like(self._previous), np.zeros(self._previous.shape[:2], bool)
    else:
      field, ok = rasterise(vectors, size, self.stored_size, self.block, past=past, future=future)
      self.frames_with_vectors += 1
    self._previous = field
    j = int(np.searchsorted(self.picked, k, side="left"))  # first stored frame at or after k
    if 1 <= j < len(self.picked):
      self.sums[j] += field
      self.valid[j] &= ok
    self.types[self.picked == k] = kind


class Transcoder:
  """Re-encodes frames to H.264 in memory (libx264, `X264_OPTIONS`) and decodes them with vector
  export: `encode(frame)` / `flush()` return the decoded H.264 frames, in display order."""

  def __init__(self, height: int, width: int, options: dict | None = None):
    import av

    self.height, self.width = height + height % 2, width + width % 2  # 4:2:0 needs even sides
    self.encoder = av.CodecContext.create("libx264", "w")
    self.encoder.width, self.encoder.height, self.encoder.pix_fmt = (
      self.width,
      self.height,
      "yuv420p",
    )
    self.encoder.time_base = _TIME_BASE
    self.encoder.framerate = 1 / _TIME_BASE
    self.encoder.options = encoder_options(X264_OPTIONS if options is None else options)
    self.decoder = av.CodecContext.create("h264", "r")
    enable_export(self.decoder)
    self.count = 0
    self.version = None  # x264's own version line, from its first packet

  def encode(self, frame) -> list:
    """Feeds one frame (`av.VideoFrame`, or uint8 [H, W, 3] RGB)."""
    import av

    if isinstance(frame, np.ndarray):
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, np.uint8), format="rgb24")
    out = frame.reformat(width=self.width, height=self.height, format="yuv420p")
    if out is frame:  # already the right size and format: do not touch the caller's frame
      out = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
    out.pts, out.time_base, out.pict_type = self.count, _TIME_BASE, 0  # no forced key frames
    self.count += 1
    return self._decode(self.encoder.encode(out))

  def flush(self) -> list:
    frames = self._decode(self.encoder.encode(None))
    return frames + list(self.decoder.decode(None))

  def _decode(self, packets) -> list:
    frames = []
    for packet in packets:
      if self.version is None:
        self.version = _x264_version(bytes(packet))
      frames.extend(self.decoder.decode(packet))
    return frames


def _x264_version(data: bytes) -> str:
  """x264's version from the SEI it writes into its first packet ("core 165 ..."), or ""."""
  found = re.search(rb"x264 - (core [^-]*?) - ", data)
  return found.group(1).decode(errors="replace").strip() if found else ""


def has_libx264() -> bool:
  """Whether this PyAV can encode with libx264 (the transcode needs it)."""
  import av

  return "libx264" in av.codecs_available


@functools.lru_cache(maxsize=None)
def x264_version() -> str:
  """The libx264 build PyAV transcodes with ("core 165"; "unavailable" without libx264)."""
  try:
    t = Transcoder(16, 16)
    t.encode(np.zeros((16, 16, 3), np.uint8))
    t.flush()
  except Exception as e:  # noqa: BLE001 - any failure means no usable libx264
    return f"unavailable ({type(e).__name__})"
  return t.version or "unknown"


def transcoder_versions() -> dict:
  """What makes the field of a transcoded video, as a JSON-able dict (for `decoder_versions`)."""
  import av

  return {
    "pyav": str(av.__version__),
    "libx264": x264_version(),
    "x264_options": dict(X264_OPTIONS),
    "x264_cpu_cap": X264_CPU_CAP,
  }


class Extractor:
  """What `decode` runs beside its frames: the field of one video.

  Decides on the transcode from the stream's codec (raising `DecodeError` `no_motion_vectors`
  under "never"), switches the export on, and takes every decoded frame in display order
  (`add`). `picked`: the decoded frame of each stored frame.
  """

  def __init__(self, path: str, stream, picked, settings: MotionSettings):
    from mgvm.datasets import decode as dec

    self.settings = settings
    self.codec = str(stream.codec_context.name)
    exports = self.codec in EXPORTING_CODECS
    self.transcode = settings.transcode == "always" or (
      settings.transcode == "auto" and not exports
    )
    if not exports and not self.transcode:
      raise dec.DecodeError(
        path, "no_motion_vectors", f"{self.codec} exports no motion vectors (--transcode never)"
      )
    if self.transcode and not has_libx264():
      raise dec.DecodeError(
        path, "no_motion_vectors", f"{self.codec} needs a transcode and PyAV has no libx264"
      )
    if not self.transcode:
      enable_export(stream.codec_context)
    self.picked = picked
    self.builder: FieldBuilder | None = None
    self.transcoder: Transcoder | None = None

  def add(self, frame, stored_size: tuple[int, int]) -> None:
    if self.builder is None:
      self.builder = FieldBuilder(self.picked, stored_size, self.settings.block)
      if self.transcode:
        self.transcoder = Transcoder(*stored_size)
    if self.transcoder is None:
      self.builder.add(frame)
      return
    for f in self.transcoder.encode(frame):
      self.builder.add(f)

  def finish(self) -> Field | None:
    if self.builder is None:
      return None
    if self.transcoder is not None:
      for f in self.transcoder.flush():
        self.builder.add(f)
    return self.builder.finish(
      codec="h264 (transcoded)" if self.transcode else self.codec, transcoded=self.transcode
    )


def extract(
  path: str,
  *,
  block: int = 16,
  transcode: str = "auto",
  max_fps: float | None = None,
  short_side: int | None = None,
) -> Field:
  """The field of the frames `decode.decode(path, max_fps=, short_side=)` stores."""
  from mgvm.datasets import decode as dec

  video = dec.decode(
    path,
    max_fps=max_fps,
    short_side=short_side,
    convert=lambda _: None,
    motion=MotionSettings(block, transcode),
  )
  return video.motion


def codec_motion(frames: np.ndarray, *, block: int = 16, options: dict | None = None) -> Field:
  """Encodes uint8 RGB frames [N, H, W, 3] to H.264 in memory (`options`: libx264's, default
  `X264_OPTIONS`) and returns the field of every frame (no resampling)."""
  frames = np.asarray(frames, np.uint8)
  if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
    raise ValueError(f"frames must be uint8 [N, H, W, 3] with N >= 1, got {frames.shape}")
  n, h, w, _ = frames.shape
  transcoder = Transcoder(h, w, options)
  builder = FieldBuilder(np.arange(n), (h, w), block)
  for frame in frames:
    for f in transcoder.encode(frame):
      builder.add(f)
  for f in transcoder.flush():
    builder.add(f)
  if builder.count != n:
    raise RuntimeError(f"the H.264 round trip gave {builder.count} frames for {n}")
  return builder.finish(codec="h264", transcoded=True)


def magnitude_stats(field: Field) -> dict:
  """Sums for summaries: blocks, valid blocks, the sum of |(dx, dy)| over valid blocks (stored
  px) and stored frames per type."""
  valid = np.asarray(field.valid, bool)
  norms = np.hypot(field.vectors[..., 0], field.vectors[..., 1])
  types = np.bincount(np.asarray(field.frame_types, np.int64), minlength=4)
  return {
    "blocks": int(valid.size),
    "valid_blocks": int(valid.sum()),
    "abs_sum_px": float(norms[valid].sum()),
    "frame_types": {
      "I": int(types[0]),
      "P": int(types[1]),
      "B": int(types[2]),
      "other": int(types[3]),
    },
  }
