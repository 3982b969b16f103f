"""Clips carry the codec motion field (`make_dataset(..., motion=True)`, docs/data.md "Motion in
clips"): summed over each step, cropped and averaged with the frames' box, scaled to model
pixels, flipped with the frames."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import tensorflow as tf

from mgvm.data import device_ops, pipeline, sampling, video_ops
from mgvm.data import format as fmt

BLOCK = 16  # stored px per codec block, and model px per token
S = 32  # model image size: a 2 x 2 token grid


def _field(n, gh, gw):
  """The planted field: frame j, block (i, c) moved (dx, dy) = (j + 10 c, 1 + 100 i); block
  (1, 2) is invalid in odd frames."""
  j, i, c = np.meshgrid(np.arange(n), np.arange(gh), np.arange(gw), indexing="ij")
  vectors = np.stack([j + 10.0 * c, 1.0 + 100.0 * i], -1).astype(np.float32)
  valid = np.ones((n, gh, gw), bool)
  if gh > 1 and gw > 2:
    valid[1::2, 1, 2] = False
  return vectors, valid


def _ramp_jpeg(h, w, j):
  """Red = 4 x, green = 4 y (4:4:4 JPEG), so a clip shows which box of the frame it is; blue
  changes by uneven steps from frame to frame (something for frame selection to choose)."""
  y, x = np.mgrid[:h, :w]
  image = np.stack([4 * x, 4 * y, np.full_like(x, 37 * j % 200)], -1).astype(np.uint8)
  return tf.io.encode_jpeg(image, quality=100, chroma_downsampling=False).numpy()


def _record(name, n, h, w, fps=25.0, motion=True):
  vectors, valid = _field(n, h // BLOCK, w // BLOCK)
  field = dict(vectors=vectors, valid=valid, frame_types=np.ones(n, np.int64), block=BLOCK)
  return fmt.encode_example(
    video_id=name,
    fps=fps,
    jpeg_frames=[_ramp_jpeg(h, w, j) for j in range(n)],
    height=h,
    width=w,
    label=n,  # tells the test the video's frame count
    motion=field if motion else None,
  )


def _write(path, records):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for r in records:
      writer.write(r)
  return str(path)


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
  """Frames 48 x 64 (a 3 x 4 block grid); 40 frames, and 5 (clips wrap around)."""
  root = tmp_path_factory.mktemp("motion")
  return _write(root / "train.tfrecord", [_record("long", 40, 48, 64), _record("short", 5, 48, 64)])


def _take(ds, n):
  return list(itertools.islice(pipeline.numpy_batches(ds), n))


@functools.lru_cache(maxsize=None)
def _decoded(h, w, j):
  return tf.io.decode_jpeg(_ramp_jpeg(h, w, j)).numpy().astype(np.float64)


def _box(video, h, w, j):
  """(y, x, h, w) stored pixels the uint8 clip frame `video` [S, S, 3] shows, source frame `j`
  of an h x w video. Per axis (y: green, x: red), the integer start and side whose bilinear
  resample of the decoded source frame's ramp best matches the clip's (the pipeline's crops are
  whole pixels), among those within 1 px of a straight-line fit."""
  source = _decoded(h, w, int(j))
  centres = np.arange(S) + 0.5
  box = []
  for channel, axis in ((1, 0), (0, 1)):
    ramp = source[..., channel].mean(1 - axis)  # along the axis
    profile = video[..., channel].astype(np.float64).mean(1 - axis)
    slope, intercept = np.polyfit(centres, profile, 1)
    a, b = np.polyfit(np.arange(len(ramp)), ramp, 1)
    side, start = round(slope * S / a), round((intercept - b) / a + 0.5)
    error, start, side = min(
      (
        np.abs(np.interp(p0 + centres * d / S - 0.5, np.arange(len(ramp)), ramp) - profile).max(),
        p0,
        d,
      )
      for p0 in (start - 1, start, start + 1)
      for d in (side - 1, side, side + 1)
    )
    assert error < 1, (channel, error)  # any other whole-pixel box is off by about 4
    box += [start, side]
  return box[0], box[2], box[1], box[3]  # (y, x, h, w)


def _expected(n, gh, gw, positions, box):
  """(motion [T, g, g, 2], valid [T, g, g]) computed the slow way: sum the planted field over
  each step frame by frame, paint it on stored pixels, crop the box, average each cell on a
  g-times finer raster, scale by S / side."""
  vectors, valid = _field(n, gh, gw)
  moved = np.zeros((len(positions), gh, gw, 2))
  share = np.zeros((len(positions), gh, gw))
  for k in range(1, len(positions)):
    a, b = int(positions[k - 1]), int(positions[k])
    if a // n != b // n:  # across the video's end: a cut
      continue
    if a == b:
      share[k] = 1.0
      continue
    frames = [j % n for j in range(a + 1, b + 1)]
    moved[k], share[k] = vectors[frames].sum(0), valid[frames].mean(0)
  y, x, h, w = box
  g = S // BLOCK

  def grid(f):  # [T, gh, gw, C] -> [T, g, g, C]
    pixels = f.repeat(BLOCK, 1).repeat(BLOCK, 2)[:, y : y + h, x : x + w]
    fine = pixels.repeat(g, 1).repeat(g, 2)  # cell edges on whole sub-pixels
    return fine.reshape(len(f), g, h, g, w, -1).mean(axis=(2, 4))

  return grid(moved) * [S / w, S / h], grid(share[..., None])[..., 0]


def _check_clip(b, i, gh=3, gw=4, positions=None):
  n = int(b["label"][i])
  if positions is None:
    positions = sampling.clip_positions_np(b["frame_indices"][i], float(b["stride"][i]))
  box = _box(b["video"][i, 0], gh * BLOCK, gw * BLOCK, b["frame_indices"][i, 0])
  motion, valid = _expected(n, gh, gw, positions, box)
  np.testing.assert_allclose(b["motion"][i], motion, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(b["motion_valid"][i], valid, rtol=1e-6, atol=1e-6)
  return motion, valid, box


def test_steps_sum_the_stored_fields_and_wrap_around_is_a_cut():
  n = 10
  vectors = np.zeros((n, 1, 1, 2), np.float32)
  vectors[:, 0, 0, 0] = np.arange(n)  # dx = frame index
  vectors[:, 0, 0, 1] = 1.0
  valid = np.ones((n, 1, 1), bool)
  valid[4] = False
  moved, share = video_ops.motion_steps(
    vectors, valid, tf.constant([[2, 5, 5, 9], [7, 10, 13, 13]])
  )
  # (2, 5]: 3 + 4 + 5, 3 frames, frame 4 invalid; (5, 5]: the same frame; (5, 9]: 6 + ... + 9
  np.testing.assert_array_equal(moved[0, :, 0, 0], [[0, 0], [12, 3], [0, 0], [30, 4]])
  np.testing.assert_allclose(share[0, :, 0, 0], [0, 2 / 3, 1, 1])
  # (7, 10] passes from frame 9 to frame 0: a cut; (10, 13] = frames 1, 2, 3
  np.testing.assert_array_equal(moved[1, :, 0, 0], [[0, 0], [0, 0], [6, 3], [0, 0]])
  np.testing.assert_array_equal(share[1, :, 0, 0], [0, 0, 1, 1])


def test_crop_and_average_onto_the_token_grid_by_hand():
  """Stored 64 x 64 px, 4 x 4 blocks: dx = block column, dy = block row; row 0 invalid. Box
  y 8, x 16, h 32, w 48 -> 2 x 2 cells of 16 x 24 stored px."""
  r, c = np.mgrid[:4, :4]
  vectors = np.stack([c, r], -1)[None].astype(np.float32)  # 1 frame
  valid = (r > 0)[None]
  box = tf.constant([[8, 16, 32, 48]])
  motion = video_ops.motion_to_grid(vectors[None], box, BLOCK, (2, 2))[0, 0].numpy()
  # rows: cell 0 = y [8, 24) half block 0, half block 1; cell 1 = y [24, 40): blocks 1, 2
  # columns: cell 0 = x [16, 40): 16 px of block 1, 8 of block 2; cell 1 = x [40, 64): 8, 16
  np.testing.assert_allclose(motion[..., 0], [[4 / 3, 8 / 3]] * 2)
  np.testing.assert_allclose(motion[..., 1], [[0.5, 0.5], [1.5, 1.5]])
  share = video_ops.motion_to_grid(valid[None, ..., None], box, BLOCK, (2, 2))[0, 0, ..., 0]
  np.testing.assert_allclose(share, [[0.5, 0.5], [1, 1]])
  # clip_motion: frame 1 moved as above; scale S / w = 2/3, S / h = 1; entry 0 is 0
  steps = np.concatenate([np.zeros_like(vectors), vectors])
  valid2 = np.concatenate([valid, valid])
  m, ok = video_ops.clip_motion(steps, valid2, BLOCK, tf.constant([[0, 1]]), box, S, 16)
  np.testing.assert_allclose(m[0, 1, ..., 0], [[8 / 9, 16 / 9]] * 2, rtol=1e-6)
  np.testing.assert_allclose(m[0, 1, ..., 1], [[0.5, 0.5], [1.5, 1.5]])
  np.testing.assert_array_equal(m[0, 0], 0)
  np.testing.assert_array_equal(ok[0, 0], 0)
  np.testing.assert_allclose(ok[0, 1], [[0.5, 0.5], [1, 1]])
  with pytest.raises(ValueError, match="multiple of motion_block"):
    video_ops.clip_motion(steps, valid2, BLOCK, tf.constant([[0, 1]]), box, 40, 16)


def test_eval_crop_boxes_map_each_view_back_to_the_frame():
  """A ramp frame resized and cropped by `spatial_crops` shows, at output column c, the frame
  coordinate x0 + (c + 1/2) w / S − 1/2 of its box (bilinear, away from the clamped edges)."""
  for h, w, crops in [(40, 72, 3), (72, 40, 3), (50, 50, 1), (36, 90, 1)]:
    y, x = np.mgrid[:h, :w].astype(np.float32)
    frame = tf.constant(np.stack([x, y, 0 * x], -1)[None])
    views = video_ops.spatial_crops(frame, S, crops).numpy()[:, 0]
    boxes = video_ops.spatial_crop_boxes(h, w, S, crops).numpy()
    centre = np.arange(4, S - 4) + 0.5
    for view, (y0, x0, bh, bw) in zip(views, boxes):
      xs, ys = x0 + centre * bw / S - 0.5, y0 + centre * bh / S - 0.5
      np.testing.assert_allclose(view[4:-4, 4:-4, 0], np.broadcast_to(xs, (24, 24)), atol=1e-3)
      np.testing.assert_allclose(
        view[4:-4, 4:-4, 1], np.broadcast_to(ys[:, None], (24, 24)), atol=1e-3
      )


def test_eval_views_by_hand(tmp_path):
  """Frames 32 x 48 (2 x 3 blocks), 12 frames, stride 2, 2 clips x 3 crops: the short side is
  already 32, so the crops are x 0, 8, 16 of the frame, scale 1."""
  path = _write(tmp_path / "eval.tfrecord", [_record("v", 12, 32, 48)])
  kwargs = dict(mode="eval", num_frames=4, image_size=S, batch_size=6, frame_stride=2)
  (b,) = _take(pipeline.make_dataset(path, num_clips=2, num_crops=3, motion=True, **kwargs), 1)
  assert b["motion"].shape == (6, 4, 2, 2, 2) and b["motion"].dtype == np.float32
  assert b["motion_valid"].shape == (6, 4, 2, 2) and b["motion_valid"].dtype == np.float32
  np.testing.assert_array_equal(b["frame_indices"][0], [0, 2, 4, 6])  # starts 0 and 5
  np.testing.assert_array_equal(b["frame_indices"][3], [5, 7, 9, 11])
  # dx = Σ j over the step + 2 · (10 · block column), averaged over the cell's columns
  frame_sums = {0: [0, 3, 7, 11], 1: [0, 13, 17, 21]}  # (1 + 2), (3 + 4), ...; (6 + 7), ...
  columns = {0: [0, 10], 1: [5, 15], 2: [10, 20]}  # cells x [0,16),[16,32) / [8,24),[24,40) / ...
  for v in range(6):
    clip, crop = divmod(v, 3)
    dx = np.array(frame_sums[clip])[:, None] + 2 * np.array(columns[crop])[None]
    dx[0] = 0
    np.testing.assert_allclose(b["motion"][v, :, 0, :, 0], dx)  # the same in both rows
    np.testing.assert_allclose(b["motion"][v, :, 1, :, 0], dx)
    np.testing.assert_allclose(b["motion"][v, 1:, :, 0, 1], [[2, 202]] * 3)  # 2 (1 + 100 row)
    assert not b["motion"][v, 0].any() and not b["motion_valid"][v, 0].any()
  # Block (1, 2) is invalid in odd frames: one of the two frames of every step of clip 0
  valid = b["motion_valid"][:, 1:]
  np.testing.assert_array_equal(valid[[0, 3]], 1)  # crop x 0 never reaches block 2
  np.testing.assert_allclose(valid[1, :, 1], [[1, 0.75]] * 3)  # cell x [24, 40): half block 2
  np.testing.assert_allclose(valid[2, :, 1], [[1, 0.5]] * 3)  # cell x [32, 48): block 2
  np.testing.assert_array_equal(valid[:, :, 0], 1)
  plain = _take(pipeline.make_dataset(path, num_clips=2, num_crops=3, **kwargs), 1)[0]
  assert set(b) - set(plain) == {"motion", "motion_valid"}
  for key in plain:
    np.testing.assert_array_equal(b[key], plain[key], err_msg=key)
  # Segment sampling: clip 0 takes frames 0, 3, 6, 9; clip 1 frames 1, 4, 7, 10
  seg = pipeline.make_dataset(path, num_clips=2, temporal="segment", motion=True, **kwargs)
  (b,) = _take(seg, 1)
  np.testing.assert_array_equal(b["frame_indices"][:2], [[0, 3, 6, 9], [1, 4, 7, 10]])
  # the centre crop, x [8, 40): cell 0 = half block 0, half block 1 -> 10 · 0.5 per frame
  np.testing.assert_allclose(b["motion"][0, :, 0, 0, 0], [0, 6 + 15, 15 + 15, 24 + 15])
  np.testing.assert_allclose(b["motion"][1, :, 0, 0, 0], [0, 9 + 15, 18 + 15, 27 + 15])


@pytest.mark.parametrize(
  "kwargs",
  [
    # strides 2.5 and 5/3; the 5-frame video wraps around (a cut)
    dict(mode="pretrain", target_fps=[10.0, 15.0], num_sample=2),
    dict(mode="finetune", crop_scale=(0.5, 1.0), num_sample=2, frame_stride=3),
    dict(mode="finetune", crop_scale=(0.5, 1.0), temporal="segment"),
  ],
)
def test_training_clips_follow_their_crop_stride_and_flip(shard, kwargs):
  ds = pipeline.make_dataset(
    shard, num_frames=4, image_size=S, batch_size=4, seed=3, motion=True, **kwargs
  )
  flips, boxes, strides, cuts = [], set(), set(), 0
  for b in _take(ds, 2):
    assert b["motion"].shape == (4, 4, 2, 2, 2) and b["motion_valid"].shape == (4, 4, 2, 2)
    model_motion, model_valid = device_ops.model_motion(b)
    for i in range(4):
      positions = b["frame_indices"][i] if kwargs.get("temporal") == "segment" else None
      motion, valid, box = _check_clip(b, i, positions=positions)
      boxes.add(box)
      strides.add(float(b["stride"][i]))
      cuts += (np.diff(b["frame_indices"][i]) < 0).any()  # wrapped around: 0 and invalid
      flipped = bool(b.get("flip", np.zeros(4, bool))[i])
      flips.append(flipped)
      if flipped:  # mirrored grid, dx negated; the video mirrors on the device too
        motion, valid = motion[:, :, ::-1] * [-1, 1], valid[:, :, ::-1]
      np.testing.assert_allclose(model_motion[i], motion, rtol=1e-5, atol=1e-4)
      np.testing.assert_allclose(model_valid[i], valid, atol=1e-6)
    if kwargs.get("num_sample") == 2:  # the two views: same frames, own crops
      np.testing.assert_array_equal(b["frame_indices"][0::2], b["frame_indices"][1::2])
  assert len(boxes) >= 3  # the crops vary
  if kwargs["mode"] == "finetune":
    assert any(flips) and not all(flips)
  if "target_fps" in kwargs:
    assert strides == {2.5, float(np.float32(25 / 15))} and cuts


def test_frame_selection_sums_between_the_kept_frames(shard, tmp_path):
  kwargs = dict(num_frames=4, image_size=S, frame_stride=2, frame_selection="global", motion=True)
  gaps = 0
  for b in _take(pipeline.make_dataset(shard, mode="pretrain", batch_size=2, seed=1, **kwargs), 3):
    for i in range(2):
      if b["label"][i] == 40:  # the window (15 frames) fits: positions are the indices
        kept = b["frame_indices"][i]
        assert (np.diff(kept) > 0).all()
        gaps += np.diff(kept).max() > 2  # frames of the window were dropped
        _check_clip(b, i, positions=kept)
  assert gaps
  # Eval: each view (crop) keeps its own frames; crops x 0, 8, 16 of a 32 x 48 frame
  path = _write(tmp_path / "eval.tfrecord", [_record("v", 40, 32, 48)])
  ev = pipeline.make_dataset(path, mode="eval", batch_size=6, num_clips=2, num_crops=3, **kwargs)
  (b,) = _take(ev, 1)
  assert len({tuple(kept) for kept in b["frame_indices"]}) > 2
  for v, kept in enumerate(b["frame_indices"]):
    motion, valid = _expected(40, 2, 3, kept, (0, 8 * (v % 3), 32, 32))
    np.testing.assert_allclose(b["motion"][v], motion, rtol=1e-5)
    np.testing.assert_allclose(b["motion_valid"][v], valid)


def test_motion_off_reads_nothing_new_and_errors_are_clear(tmp_path, shard):
  plain = _write(tmp_path / "plain.tfrecord", [_record("p", 8, 32, 32, motion=False)])
  kwargs = dict(mode="finetune", num_frames=4, image_size=S, batch_size=2)
  (b,) = _take(pipeline.make_dataset(plain, **kwargs), 1)
  assert set(b) == {"video", "flip", "label", "frame_indices", "fps", "stride", "clip_fps"}
  with pytest.raises(tf.errors.InvalidArgumentError, match="no motion field"):
    _take(pipeline.make_dataset(plain, motion=True, **kwargs), 1)
  with pytest.raises(ValueError, match="rand_augment"):
    pipeline.make_dataset(shard, motion=True, rand_augment="rand-m7-n4-mstd0.5-inc1", **kwargs)
  with pytest.raises(ValueError, match="motion_block"):
    pipeline.make_dataset(shard, motion=True, motion_block=12, **kwargs)
  with pytest.raises(ValueError, match="lacks"):
    pipeline.make_dataset(shard, motion=True, parse_fn=fmt.parse_example, **kwargs)


def test_device_flip_mirrors_the_grid_and_negates_dx():
  motion = np.arange(2 * 1 * 2 * 3 * 2, dtype=np.float32).reshape(2, 1, 2, 3, 2)
  out = np.asarray(device_ops.flip_motion(motion, np.array([True, False])))
  np.testing.assert_array_equal(out[0, ..., 0], -motion[0, :, :, ::-1, 0])
  np.testing.assert_array_equal(out[0, ..., 1], motion[0, :, :, ::-1, 1])
  np.testing.assert_array_equal(out[1], motion[1])
