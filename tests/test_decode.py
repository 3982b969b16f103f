"""PyAV decoding onto a constant frame rate by timestamps, and VideoMAE-format video lists.

Videos are written in the tests with PyAV (`tests/video_files.py`): each frame shows its index,
so a test reads back exactly which source frame it got, whatever the codec's losses.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from mgvm.datasets import decode as dec
from mgvm.datasets import video_list
from tests.video_files import H, W
from tests.video_files import index_of as _index
from tests.video_files import write_video as _write


def test_constant_rate_indices_by_hand():
  assert dec.constant_rate_indices([0, 0.1, 0.2, 0.3], 10).tolist() == [0, 1, 2, 3]
  assert dec.constant_rate_indices([0, 0.1, 0.2, 0.3], 5).tolist() == [0, 2, 3]
  # grid 0, .1, .2, .3 against a variable-rate stream: nearest timestamp, ties to the earlier.
  assert dec.constant_rate_indices([0, 0.05, 0.3], 10).tolist() == [0, 1, 2, 2]
  assert dec.constant_rate_indices([0, 0.1], 20).tolist() == [0, 0, 1]
  assert dec.constant_rate_indices([], 10).tolist() == []


def test_ntsc_mp4_keeps_every_frame_and_a_cap_takes_the_nearest(tmp_path):
  path = _write(tmp_path / "ntsc.mp4", 30, Fraction(30000, 1001))
  d = dec.decode(path)
  assert d.fps == pytest.approx(30000 / 1001) and d.frames.shape == (30, H, W, 3)
  assert [_index(f) for f in d.frames] == list(range(30))
  capped = dec.decode(path, max_fps=10)
  # t_k = k / 10 s; source frame i is at i * 1001 / 30000 s: nearest i = round(2.997 k).
  assert capped.fps == 10
  assert [_index(f) for f in capped.frames] == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29]


def test_webm_and_short_side(tmp_path):
  path = _write(tmp_path / "clip.webm", 12, 24, codec="libvpx-vp9")
  d = dec.decode(path, short_side=32)
  assert d.fps == 24 and d.frames.shape == (12, 32, 64, 3)
  assert [_index(f) for f in d.frames] == list(range(12))


def test_variable_rate_file_is_resampled_by_its_timestamps(tmp_path):
  times = np.concatenate([np.arange(10) / 30, 10 / 30 + np.arange(1, 11) / 10])  # 30 then 10 fps
  path = _write(tmp_path / "vfr.mp4", 20, 30, times=times)
  d = dec.decode(path)
  with av.open(path) as c:
    assert d.fps == pytest.approx(float(c.streams.video[0].average_rate))
  assert 10 < d.fps < 30  # neither rate assumed for the whole file
  got = [_index(f) for f in d.frames]
  np.testing.assert_allclose(d.timestamps, times[got], atol=1e-3)
  grid = np.arange(len(got)) / d.fps
  for k, g in enumerate(grid):  # each output frame is the source frame nearest its grid time
    assert abs(times[got[k]] - g) <= np.abs(times - g).min() + 1e-3
  assert (
    got == sorted(got) and got[-1] == 19 and len(set(got)) < len(got)
  )  # repeats in the slow part


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "truncated", "audio_only"])
def test_unusable_files_raise_with_a_reason(tmp_path, kind):
  path = tmp_path / f"{kind}.mp4"
  if kind == "empty":
    path.write_bytes(b"")
  elif kind == "garbage":
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
  elif kind == "truncated":
    whole = tmp_path / "whole.mp4"
    _write(whole, 30, 30)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
  elif kind == "audio_only":
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as c:
      s = c.add_stream("pcm_s16le", rate=8000)
      frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
      frame.sample_rate = 8000
      for p in s.encode(frame):
        c.mux(p)
      for p in s.encode():
        c.mux(p)
  with pytest.raises(dec.DecodeError) as e:
    dec.decode(str(path))
  expected = {
    "missing": {"missing"},
    "empty": {"empty"},
    "garbage": {"unreadable"},
    "truncated": {"unreadable", "truncated"},
    "audio_only": {"no_video_stream"},
  }[kind]
  assert e.value.reason in expected and str(path) in str(e.value)


# ------------------------------------------------------------------------------ video lists


def test_video_list_forms(tmp_path):
  listing = tmp_path / "train.csv"
  listing.write_text("# comment\n\na.mp4 3\nsub/b.webm,0\nmy video.mp4,12\n")
  entries = video_list.read_list(str(listing), root="/data")
  assert [(e.path, e.label, e.line) for e in entries] == [
    ("/data/a.mp4", 3, 3),
    ("/data/sub/b.webm", 0, 4),
    ("/data/my video.mp4", 12, 5),
  ]
  listing.write_text("a.mp4\n/abs/b.mp4\n")
  assert [(e.path, e.label) for e in video_list.read_list(str(listing), root="r")] == [
    ("r/a.mp4", None),
    ("/abs/b.mp4", None),
  ]


@pytest.mark.parametrize(
  "text, message",
  [
    ("a.mp4 1\nb c.mp4 2\n", r"train.csv:2: expected 'path label', got 3 fields"),
    ("a.mp4 1\nb.mp4 one\n", r"train.csv:2: label 'one' is not an integer"),
    ("a.mp4 -1\n", r"train.csv:1: label -1 is negative"),
    ("a.mp4 1\n\nb.mp4\n", r"train.csv:3: no label here, but line 1 has one"),
    (",4\n", r"train.csv:1: empty path"),
  ],
)
def test_video_list_errors_name_the_line(tmp_path, text, message):
  listing = tmp_path / "train.csv"
  listing.write_text(text)
  with pytest.raises(video_list.VideoListError, match=message):
    video_list.read_list(str(listing))


def test_streaming_pass_equals_the_in_memory_pass_and_converts_only_kept_frames(
  tmp_path, monkeypatch
):
  times = np.concatenate([np.arange(10) / 30, 10 / 30 + np.arange(1, 11) / 10])
  videos = [
    (_write(tmp_path / "ntsc.mp4", 30, Fraction(30000, 1001)), 10),
    (_write(tmp_path / "clip.webm", 12, 24, codec="libvpx-vp9"), None),
    (_write(tmp_path / "vfr.mp4", 20, 30, times=times), None),
  ]
  fallbacks = []
  in_memory = dec._decode_in_memory
  monkeypatch.setattr(dec, "_decode_in_memory", lambda *a: fallbacks.append(a) or in_memory(*a))
  for path, max_fps in videos:
    converted = []
    streamed = dec.decode(
      path, max_fps=max_fps, short_side=32, convert=lambda img: converted.append(1) or _index(img)
    )
    held = in_memory(path, max_fps, 32, _index)
    assert streamed.frames == held.frames and streamed.fps == held.fps
    np.testing.assert_array_equal(streamed.timestamps, held.timestamps)
    assert len(converted) == len(set(streamed.frames)) < len(held.frames) + 1
  assert not fallbacks  # every file took the two-pass, bounded-memory path
  assert len(converted) < 20 and len(streamed.frames) > len(converted)  # repeats not re-converted
