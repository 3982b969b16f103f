"""The codec motion field (`mgvm.datasets.motion_vectors`, `prepare --motion-vectors`).

Hand-computed rasterisation and gap / resampling rules on fake frames; then real PyAV-encoded
videos of a square moving at a planted velocity over a panning background: the vectors on the
square's blocks are its velocity and on the background the pan, within a quarter pixel (H.264's
vector precision), with and without B-frames, resampled, resized and transcoded from VP9.
"""

from __future__ import annotations

import glob
import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import x264_determinism
from mgvm.data import format as fmt
from mgvm.datasets import decode as dec
from mgvm.datasets import motion_vectors as mv
from mgvm.datasets import prepare
from tests.video_files import square_box, write_moving_square

TOL = 0.25  # px: one quarter-pel step
VELOCITY, PAN = (2, 0), (-1, 1)
NO_B = {"x264-params": "bframes=0:ref=1"}
IBBP = {"x264-params": "bframes=2:b-adapt=0:b-pyramid=none:ref=1"}


# ---------------------------------------------------------------- rasterisation and rules


def _vectors(rows):
  """AVMotionVector records from (source, w, h, dst_x, dst_y, motion_x, motion_y, scale)."""
  dtype = [
    ("source", "<i4"),
    ("w", "u1"),
    ("h", "u1"),
    ("dst_x", "<i2"),
    ("dst_y", "<i2"),
    ("motion_x", "<i4"),
    ("motion_y", "<i4"),
    ("motion_scale", "<u2"),
  ]
  return np.array([tuple(r) for r in rows], dtype)


def test_rasterise_is_the_area_weighted_mean_per_block():
  vectors = _vectors(
    [
      (-1, 16, 16, 8, 8, -8, 4, 4),  # cell (0, 0) whole: src = dst + (-2, 1) -> moved (2, -1)
      (1, 8, 8, 20, 4, 4, 0, 4),  # future ref 2 frames ahead: (+1 / 2, 0), a quarter of (0, 1)
      (-1, 16, 8, 16, 20, 0, -12, 4),  # half in (1, 0), half in (1, 1): moved (0, 3)
      (-1, 8, 8, 4, 28, -4, 0, 2),  # (1, 0): half-pel scale, moved (2, 0)
    ]
  )
  field, valid = mv.rasterise(vectors, (32, 32), (32, 32), 16, past=1, future=2)
  np.testing.assert_allclose(field[0, 0], [2, -1])
  np.testing.assert_allclose(field[0, 1], [0.5, 0])  # only the covered part counts
  np.testing.assert_allclose(field[1, 0], [(0 + 2) / 2, (3 + 0) / 2])  # 64 px² each
  np.testing.assert_allclose(field[1, 1], [0, 3])
  assert valid.all()
  # A past reference 3 frames back divides by 3; the stored frame at half size halves the
  # vectors and puts the same blocks on a grid of 8 px cells.
  field, valid = mv.rasterise(vectors[:1], (32, 32), (16, 16), 8, past=3)
  np.testing.assert_allclose(field[0, 0], [1 / 3, -1 / 6], rtol=1e-6)
  assert valid.tolist() == [[True, False], [False, False]]
  assert field[1, 1].tolist() == [0, 0]
  # Blocks past the frame's edge (H.264 codes 16-px rows of a 20-px-high frame) are clipped.
  field, valid = mv.rasterise(_vectors([(-1, 16, 16, 8, 24, -4, 0, 4)]), (20, 16), (20, 16), 16)
  assert valid.tolist() == [[False], [True]] and field[1, 0].tolist() == [1, 0]


def test_the_unused_list_of_a_b_partition_is_dropped():
  """FFmpeg exports (0, 0) for the list a B-partition does not use; a static block keeps both."""
  vectors = _vectors(
    [
      (-1, 8, 16, 4, 8, -4, 0, 4),  # left half: past, moved (1, 0)
      (1, 8, 16, 4, 8, 0, 0, 4),  # its unused future list
      (1, 8, 16, 12, 8, 4, 0, 4),  # right half: future, moved (1, 0)
      (-1, 8, 16, 12, 8, 0, 0, 4),  # its unused past list
      (-1, 16, 16, 24, 8, 0, 0, 4),  # a static block, both lists
      (1, 16, 16, 24, 8, 0, 0, 4),
    ]
  )
  kept = mv.drop_unused_list(vectors)
  assert kept[["source", "dst_x"]].tolist() == [(-1, 4), (1, 12), (-1, 24), (1, 24)]
  field, valid = mv.rasterise(vectors, (16, 32), (16, 32), 16)
  np.testing.assert_allclose(field[0], [[1, 0], [0, 0]])
  assert valid.all()


def _frame(kind, rows=(), size=(32, 32)):
  """A stand-in for an `av.VideoFrame`: picture type (1 I, 2 P, 3 B), vectors, size."""
  data = {"MOTION_VECTORS": _Side(_vectors(rows))} if rows else {}
  return types.SimpleNamespace(pict_type=kind, side_data=data, height=size[0], width=size[1])


class _Side:
  def __init__(self, array):
    self.array = array

  def __len__(self):
    return len(self.array)

  def to_ndarray(self):
    return self.array


def _whole(dx, source=-1):
  """One 32x32 block (the whole frame) moving by integer dx quarter-pels to its reference."""
  return [(source, 32, 32, 16, 16, dx, 0, 4)]


def test_gap_rule_resampling_and_anchor_distances():
  # Display order: I0 P1 P2 I3 P4 (all content moving +1 px per frame) then B5 B6 P7 (IBBP: P7
  # refers to P4, 3 frames back; the B-frames to P4 and P7), P8 with no vectors at all.
  frames = [
    _frame(1),
    _frame(2, _whole(-4)),
    _frame(2, _whole(-4)),
    _frame(1),
    _frame(2, _whole(-4)),
    _frame(3, _whole(-4) + _whole(8, source=1)),  # 1 back, 2 ahead: both say +1 px
    _frame(3, _whole(-8) + _whole(4, source=1)),  # 2 back, 1 ahead
    _frame(2, _whole(-12)),  # 3 back
    _frame(2),
  ]
  builder = mv.FieldBuilder(np.arange(9), (32, 32), 16)
  for f in frames:
    builder.add(f)
  field = builder.finish()
  dx = field.vectors[..., 0].mean((1, 2))
  np.testing.assert_allclose(dx, [0, 1, 1, 1, 1, 1, 1, 1, 0])  # I3: P2's field carried on
  assert field.valid.all((1, 2)).tolist() == [
    False,
    True,
    True,
    False,
    True,
    True,
    True,
    True,
    False,
  ]
  assert field.frame_types.tolist() == [0, 1, 1, 0, 1, 2, 2, 1, 1]
  # Stored frames 0, 2, 2, 5, 8 (every 2nd-3rd, one repeated): sums since the previous stored
  # frame, valid where every summand was; a repeat moved 0 and is valid.
  builder = mv.FieldBuilder([0, 2, 2, 5, 8], (32, 32), 16)
  for f in frames:
    builder.add(f)
  field = builder.finish()
  np.testing.assert_allclose(field.vectors[..., 0].mean((1, 2)), [0, 2, 0, 3, 2])
  assert field.valid.all((1, 2)).tolist() == [False, True, True, False, False]
  assert field.frame_types.tolist() == [0, 1, 1, 2, 1]


def test_settings_are_checked():
  with pytest.raises(ValueError, match="transcode must be one of auto, always, never"):
    mv.MotionSettings(transcode="sometimes")
  with pytest.raises(ValueError, match="block"):
    mv.MotionSettings(block=0)


# ---------------------------------------------------------------- planted motion, real codecs


def _cells(field, i, velocity, step=1, scale=1.0):
  """(square cells, background cells) of stored frame i: cells wholly inside the square in the
  source frames it sums (i·step − step + 1 … i·step), and cells touching none of its squares
  from i·step − step on. Boxes in stored px (`scale` of the source)."""
  block = field.block
  gh, gw = field.valid.shape[1:]
  inside, outside = np.ones((gh, gw), bool), np.ones((gh, gw), bool)
  r, c = np.mgrid[:gh, :gw]
  for k in range(i * step - step, i * step + 1):
    x0, y0, x1, y1 = (v * scale for v in square_box(k, velocity))
    if k > i * step - step:
      inside &= (c * block >= x0) & ((c + 1) * block <= x1)
      inside &= (r * block >= y0) & ((r + 1) * block <= y1)
    outside &= ~(
      (c * block < x1) & ((c + 1) * block > x0) & (r * block < y1) & ((r + 1) * block > y0)
    )
  return inside, outside


def _check(field, velocity, pan, *, step=1, scale=1.0, frames=None, worst=TOL):
  """Every valid square cell moved by step·velocity·scale, every background cell by the pan
  (step·pan·scale): within `worst` px each, within `TOL` on average per frame."""
  checked = [0, 0]
  for i in frames or range(1, len(field.vectors)):
    inside, outside = _cells(field, i, velocity, step, scale)
    for n, (cells, want) in enumerate(((inside, velocity), (outside, pan))):
      want = np.asarray(want, np.float32) * step * scale
      got = field.vectors[i][cells & field.valid[i]]
      np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), atol=worst, err_msg=f"{i}")
      assert np.abs(got - want).mean() <= TOL, (i, n, got)
      assert field.valid[i][cells].mean() >= 0.9, (i, n)
      checked[n] += len(got)
  assert min(checked) > 0, checked  # both kinds of cell were there to check


@pytest.fixture(scope="module")
def square_videos(tmp_path_factory):
  root = tmp_path_factory.mktemp("square")
  args = dict(n=10, velocity=VELOCITY, pan=PAN)
  return {
    "h264": write_moving_square(root / "square.mp4", options=NO_B, **args),
    "ibbp": write_moving_square(root / "ibbp.mp4", options=IBBP, **args),
    "vp9": write_moving_square(root / "vp9.webm", codec="libvpx-vp9", **args),
    "keyint": write_moving_square(
      root / "keyint.mp4", options={"x264-params": "bframes=0:ref=1:keyint=4:min-keyint=4"}, **args
    ),
    "root": str(root),
  }


def test_h264_vectors_are_the_planted_velocity_and_pan(square_videos):
  field = mv.extract(square_videos["h264"])
  assert field.vectors.shape == (10, 3, 4, 2) and field.block == 16 and not field.transcoded
  assert field.codec == "h264" and field.frame_types.tolist() == [0] + [1] * 9
  assert not field.valid[0].any() and (field.vectors[0] == 0).all()
  _check(field, VELOCITY, PAN)


def test_b_frames_are_scaled_by_their_anchor_distance(square_videos):
  """IBBP…: P-frames refer 3 frames back, B-frames 1-2 back and 2-1 ahead. B-frames' direct-mode
  vectors are predicted, not searched: within half a pixel each, a quarter on average."""
  field = mv.extract(square_videos["ibbp"])
  assert field.frame_types.tolist() == [0, 2, 2, 1, 2, 2, 1, 2, 2, 1]
  _check(field, VELOCITY, PAN, worst=2 * TOL)


def test_an_i_frame_carries_the_previous_field_invalid(square_videos):
  field = mv.extract(square_videos["keyint"])
  assert field.frame_types.tolist() == [0, 1, 1, 1, 0, 1, 1, 1, 0, 1]
  for i in (4, 8):
    assert not field.valid[i].any()
    np.testing.assert_array_equal(field.vectors[i], field.vectors[i - 1])
  _check(field, VELOCITY, PAN, frames=[1, 2, 3, 5, 6, 7, 9])


def test_dropped_frames_sum_and_resized_frames_scale(square_videos):
  # 25 -> 12.5 fps: stored frames are source frames 0, 2, 4, 6, 8 and 9 (the grid's last point
  # is half a step past the end); each moved by the source frames since the previous one.
  field = mv.extract(square_videos["h264"], max_fps=12.5)
  full = mv.extract(square_videos["h264"])
  assert len(field.vectors) == 6
  _check(field, VELOCITY, PAN, step=2, frames=[1, 2, 3, 4])
  np.testing.assert_allclose(field.vectors[2], full.vectors[3] + full.vectors[4])
  np.testing.assert_array_equal(field.vectors[5], full.vectors[9])
  np.testing.assert_array_equal(field.valid[5], full.valid[9])
  # Short side 48 -> 24: 32x24 stored, 8-px cells (one per 16-px macroblock); vectors halved.
  field = mv.extract(square_videos["h264"], short_side=24, block=8)
  assert field.vectors.shape == (10, 3, 4, 2)
  _check(field, VELOCITY, PAN, scale=0.5)


def test_the_in_memory_path_gives_the_same_field(square_videos, monkeypatch):
  """Files whose packets do not map one to one onto frames are decoded in one pass: same field."""
  streamed = mv.extract(square_videos["ibbp"], max_fps=12.5)
  monkeypatch.setattr(dec, "packet_pts", lambda path: None)  # forces the fallback
  held = mv.extract(square_videos["ibbp"], max_fps=12.5)
  np.testing.assert_array_equal(held.vectors, streamed.vectors)
  np.testing.assert_array_equal(held.valid, streamed.valid)
  assert held.frame_types.tolist() == streamed.frame_types.tolist() == [0, 2, 2, 1, 2, 1]


def test_vp9_is_transcoded_under_auto_and_skipped_under_never(square_videos):
  field = mv.extract(square_videos["vp9"])  # auto
  assert field.transcoded and field.codec == "h264 (transcoded)"
  assert field.frame_types.tolist() == [0] + [1] * 9  # the re-encode's fixed GOP, no B-frames
  _check(field, VELOCITY, PAN)
  with pytest.raises(dec.DecodeError) as e:
    mv.extract(square_videos["vp9"], transcode="never")
  assert e.value.reason == "no_motion_vectors" and "vp9" in e.value.detail
  assert mv.extract(square_videos["h264"], transcode="always").transcoded


# ---------------------------------------------------------------- prepare


def _parse(out, split, with_motion):
  rows = {}
  for path in sorted(glob.glob(os.path.join(out, f"{split}-*.tfrecord"))):
    for record in tf.data.TFRecordDataset(path):
      ex = fmt.parse_example(record, with_motion=with_motion)
      rows[ex["id"].numpy().decode()] = {k: v.numpy() for k, v in ex.items()}
  return rows


def test_prepare_stores_the_field_and_its_statistics(square_videos, tmp_path):
  root = square_videos["root"]
  csv = tmp_path / "train.csv"
  csv.write_text("square.mp4 0\nvp9.webm 1\nibbp.mp4 2\n")
  run = ["--csv", str(csv), "--root", root, "--workers", "1", "--no-progress"]
  summary = prepare.main(run + ["--out", str(tmp_path / "motion"), "--motion-vectors"])
  stats = summary["motion_vectors"]
  assert (stats["block"], stats["transcode"], stats["videos"], stats["transcoded"]) == (
    16,
    "auto",
    3,
    1,
  )
  assert stats["frame_types"] == {"I": 3, "P": 9 + 9 + 3, "B": 6, "other": 0}
  assert 0.8 < stats["valid_share"] < 0.95  # first frames, intra blocks at the square's edges
  assert 1.0 < stats["mean_abs_px"] < 2.0  # between |pan| = 1.41 and |velocity| = 2, mostly pan
  transcoder = summary["decoder"]["transcoder"]
  assert transcoder["libx264"].startswith("core ") and transcoder["x264_options"] == mv.X264_OPTIONS
  assert transcoder["x264_cpu_cap"] == mv.X264_CPU_CAP
  assert (
    json.loads((tmp_path / "motion" / "summary.json").read_text())["splits"]["train"][
      "motion_vectors"
    ]
    == stats
  )
  rows = _parse(str(tmp_path / "motion"), "train", True)
  square = rows["square"]
  assert square["motion"].shape == (10, 3, 4, 2) and square["motion"].dtype == np.float32
  assert square["motion_valid"].shape == (10, 3, 4) and square["motion_valid"].dtype == bool
  assert square["motion_frame_type"].tolist() == [0] + [1] * 9 and square["motion_block"] == 16
  np.testing.assert_array_equal(square["motion"], mv.extract(square_videos["h264"]).vectors)
  # The frames are the ones prepare stores without the flag, byte for byte.
  summary = prepare.main(run + ["--out", str(tmp_path / "plain")])
  assert "motion_vectors" not in summary and "transcoder" not in summary["decoder"]
  plain = _parse(str(tmp_path / "plain"), "train", False)
  assert sorted(plain) == sorted(rows)
  for name, row in plain.items():
    assert row["frames"].tolist() == rows[name]["frames"].tolist()
  # Shards written without the field are rewritten by a run that asks for it (no resume, and no
  # warning: the frames' decoder is the same).
  messages = []
  prepare.prepare(
    str(csv),
    str(tmp_path / "plain"),
    root=root,
    workers=1,
    motion_vectors=True,
    log=messages.append,
  )
  assert not [m for m in messages if "WARNING" in m or "already written" in m], messages
  again = _parse(str(tmp_path / "plain"), "train", True)
  np.testing.assert_array_equal(again["ibbp"]["motion"], rows["ibbp"]["motion"])
  # --transcode never: the VP9 video is skipped and counted.
  summary = prepare.main(
    run + ["--out", str(tmp_path / "never"), "--motion-vectors", "--transcode", "never"]
  )
  assert summary["skipped_by_reason"] == {"no_motion_vectors": 1}
  assert summary["skipped_files"][0]["line"] == 2
  assert (summary["motion_vectors"]["videos"], summary["motion_vectors"]["transcoded"]) == (2, 0)


# ---------------------------------------------------------------- synthetic ground truth


def test_synthetic_truth_matches_the_flow_and_the_codec_beats_no_motion():
  """The object covering a point (`covering_objects`) moves it exactly as the rendered flow
  says; the H.264 field is nearer the true block motion than zero motion is."""
  from mgvm.datasets.synthetic import SyntheticConfig, codec, render_scene, sample_scene
  from mgvm.datasets.synthetic.render import covering_objects

  config = SyntheticConfig(
    image_size=64,
    classes=codec.TRANSLATIONS,
    min_seconds=1,
    max_seconds=1,
    min_fps=12,
    max_fps=12,
    max_distractors=1,
    camera_pan=True,
    speed=(0.3, 0.3),
    pan_speed=(0.1, 0.1),
  )
  scene = sample_scene(config, 0, "val", 0)
  video = render_scene(scene, with_flow=True)
  n = video.num_frames
  y, x = np.mgrid[:64, :64] + 0.5
  owner = covering_objects(scene, np.arange(n - 1) / video.fps, x, y).reshape(n - 1, 64, 64)
  step = np.diff(scene.poses(np.arange(n) / video.fps)[0], axis=0)
  moved = step[np.arange(n - 1)[:, None, None], np.maximum(owner, 0)]
  moved = np.where(owner[..., None] >= 0, moved, np.asarray(scene.pan) / video.fps)
  assert 0 < (owner >= 0).mean() < 0.5
  np.testing.assert_allclose(moved, video.flow, atol=1e-4)
  truth, owner, pure = codec.block_motion_truth(scene, video.fps, n, 8)
  assert truth.shape == (n, 8, 8, 2) and (truth[0] == 0).all()
  assert pure[owner < 0].mean() > 0.8 and not pure[owner >= 0].all()
  result = codec.codec_motion_error(config, indices=range(2), block=8)
  assert result["videos"] == 2 and result["frame_types"] == {"I": 2, "P": 22, "B": 0, "other": 0}
  assert result["valid_share"] > 0.9
  assert result["object_interior"]["blocks"] < result["object"]["blocks"]
  for kind in ("object", "background"):
    assert result[kind]["blocks"] > 50
    assert result[kind]["epe"] < 0.8 * result[kind]["zero_epe"], result


@pytest.mark.slow  # worker processes
def test_workers_do_not_change_the_motion_shards(square_videos, tmp_path):
  csv = tmp_path / "train.csv"
  csv.write_text("square.mp4 0\nvp9.webm 1\nibbp.mp4 2\n")
  for workers in (1, 2):
    prepare.prepare(
      str(csv),
      str(tmp_path / str(workers)),
      root=square_videos["root"],
      workers=workers,
      videos_per_shard=1,
      motion_vectors=True,
      log=lambda _: None,
    )
  names = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "1" / "*.tfrecord")))
  assert len(names) == 3
  for name in names:
    assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes()


def test_encoder_options_cap_libx264_at_avx2_only_on_an_avx512_cpu(monkeypatch):
  base = {"preset": "veryfast", "x264-params": "bframes=0:ref=1"}
  monkeypatch.setattr(mv, "has_avx512", lambda: True)
  assert mv.encoder_options(base) == {
    "preset": "veryfast",
    "x264-params": "bframes=0:ref=1:asm=AVX2",
  }
  assert mv.encoder_options({"crf": "18"}) == {"crf": "18", "x264-params": "asm=AVX2"}
  for own in ("ref=1:asm=0", "asm=SSE2:ref=1", "no-asm=1"):  # the caller's choice stands
    assert mv.encoder_options({"x264-params": own}) == {"x264-params": own}
  assert base == {"preset": "veryfast", "x264-params": "bframes=0:ref=1"}  # not mutated
  monkeypatch.setattr(mv, "has_avx512", lambda: False)
  assert mv.encoder_options(base) == base


def test_has_avx512_agrees_with_proc_cpuinfo(monkeypatch):
  if not os.path.exists("/proc/cpuinfo"):
    pytest.skip("no /proc/cpuinfo")
  with open("/proc/cpuinfo") as f:
    flags = next(line for line in f if line.startswith("flags")).split()
  assert mv.has_avx512() == ("avx512f" in flags)
  # ... and so does its fallback, where NumPy does not say: a whole flag, not a prefix
  monkeypatch.setattr(mv, "cpu_feature", lambda name: None)
  mv.has_avx512.cache_clear()
  try:
    assert mv.has_avx512() == ("avx512f" in flags)
    monkeypatch.setattr(mv, "_cpuinfo_flags", lambda: {"avx2", "avx512fp16", "avx512bw"})
    mv.has_avx512.cache_clear()
    assert not mv.has_avx512()
    monkeypatch.setattr(mv, "_cpuinfo_flags", lambda: {"avx2", "avx512f"})
    mv.has_avx512.cache_clear()
    assert mv.has_avx512()
  finally:
    mv.has_avx512.cache_clear()


def test_the_transcode_gives_the_same_bytes_every_time():
  # Without the cap, libx264's AVX-512 code made a different stream in 110 of 2,000 encodes of
  # this clip (benchmarks/x264_determinism.py, docs/data.md): 100 encodes miss that 1 time in 300.
  frames = x264_determinism.clip(48, 64)
  options = mv.encoder_options(mv.X264_OPTIONS)
  streams = {x264_determinism.encoded_bytes(frames, options) for _ in range(100)}
  assert len(streams) == 1


def test_the_x264_benchmark_parses_sizes_and_names_a_bad_one():
  import argparse

  assert x264_determinism.sizes("48x64,240X320") == [(48, 64), (240, 320)]
  for bad in ("48x", "48x64x3", "0x64", "48x6z"):
    with pytest.raises(argparse.ArgumentTypeError, match=repr(bad)):
      x264_determinism.sizes(f"32x32,{bad}")
