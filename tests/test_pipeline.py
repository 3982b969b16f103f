"""The tf.data pipeline on small records whose pixels encode the source frame index."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
import tensorflow as tf

from mgvm.data import device_ops, pipeline, sampling, video_ops
from mgvm.data import format as fmt

# Video v (its label): VIDEOS[v] = (num_frames, fps). Frame i has red = 8 i, so the decoded
# (and cropped, resized) frame tells which source frame it was; blue grows left to right, so
# a horizontal flip shows.
VIDEOS = [
  (12, 30.0),
  (5, 25.0),
  (20, 50.0),
  (31, 29.97),
  (8, 10.0),
  (16, 24.0),
  (25, 60.0),
  (9, 15.0),
]
H, W, T, S = 24, 32, 4, 16


def _jpeg(value):
  image = np.zeros((H, W, 3), np.uint8)
  image[..., 0], image[..., 2] = value, np.arange(W) * 8
  return tf.io.encode_jpeg(image, quality=100).numpy()


def _record(v):
  n, fps = VIDEOS[v]
  frames = [_jpeg(8 * i) for i in range(n)]
  return fmt.encode_example(
    video_id=f"vid{v}", fps=fps, jpeg_frames=frames, height=H, width=W, label=v
  )


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  """4 shards, 2 videos each (videos 0..7 in order)."""
  root = tmp_path_factory.mktemp("shards")
  for f in range(4):
    with tf.io.TFRecordWriter(str(root / f"train-{f:02d}.tfrecord")) as writer:
      for v in (2 * f, 2 * f + 1):
        writer.write(_record(v))
  return str(root / "train-*.tfrecord")


def _pixels(video):
  """float [0, 255] pixels of a uint8 pipeline clip or of a normalised model video."""
  if video.dtype == np.uint8:
    return video.astype(np.float32)
  mean, std = np.float32(video_ops.MEAN), np.float32(video_ops.STD)
  return (video * std + mean) * 255


def _source_frames(video):
  """[..., T] source index each frame shows, from its red level."""
  return np.rint(_pixels(video)[..., 0].mean(axis=(-1, -2)) / 8).astype(np.int32)


def _model(batch, seed=0):
  """The normalised float video the model sees (`device_ops.model_video` on the batch)."""
  return np.asarray(device_ops.model_video(batch, jax.random.key(seed)))


def _flipped(video):
  """[...] True where the clip's blue gradient runs right to left."""
  blue = video[..., 2].mean(axis=(-3, -2))  # [..., T, H, W] over frames and rows -> [..., W]
  return blue[..., -1] < blue[..., 0]


def _take(ds, n):
  return list(itertools.islice(pipeline.numpy_batches(ds), n))


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.parametrize("mode, target_fps", [("pretrain", 10.0), ("finetune", None)])
def test_train_batches_use_fps_sampling_and_decode_those_frames(shards, mode, target_fps):
  ds = pipeline.make_dataset(
    shards,
    mode=mode,
    num_frames=T,
    image_size=S,
    batch_size=4,
    target_fps=target_fps,
    frame_stride=3,
    seed=1,
  )
  batches = _take(ds, 5)  # 20 clips: crosses an epoch boundary (8 videos)
  for b in batches:
    assert b["video"].shape == (4, T, S, S, 3) and b["video"].dtype == np.uint8
    assert b["label"].dtype == np.int32 and b["label"].shape == (4,)
    assert b["frame_indices"].shape == (4, T) and b["frame_indices"].dtype == np.int32
    assert b["fps"].dtype == np.float32 and b["stride"].dtype == np.float32
    for label, idx, fps, stride, video in zip(
      b["label"], b["frame_indices"], b["fps"], b["stride"], b["video"]
    ):
      n, src_fps = VIDEOS[label]
      assert fps == np.float32(src_fps)
      expected_stride = sampling.stride_for_np(src_fps, target_fps, 3)
      assert stride == np.float32(expected_stride)
      start = int(idx[0])
      assert 0 <= start <= sampling.max_start_np(n, expected_stride, T)
      np.testing.assert_array_equal(idx, sampling.clip_indices_np(n, expected_stride, T, start))
      np.testing.assert_array_equal(_source_frames(video), idx)
  assert len({int(l) for b in batches for l in b["label"]}) >= 5  # shuffled over all shards
  flips = np.concatenate([_flipped(_model(b)) for b in batches])  # flipped on the accelerator
  assert flips.any() and not flips.all() if mode == "finetune" else not flips.any()
  if mode == "finetune":
    np.testing.assert_array_equal(flips, np.concatenate([b["flip"] for b in batches]))
  assert not np.concatenate([_flipped(b["video"]) for b in batches]).any()  # never on the host


def test_finetune_without_flip(shards):
  ds = pipeline.make_dataset(
    shards, mode="finetune", num_frames=T, image_size=S, batch_size=8, flip=False
  )
  assert not any(_flipped(_model(b)).any() or b["flip"].any() for b in _take(ds, 2))


def test_train_stream_is_deterministic_and_resumes_exactly(shards):
  kwargs = dict(
    mode="finetune",
    num_frames=T,
    image_size=S,
    batch_size=3,
    target_fps=8.0,
    seed=5,
    shuffle_buffer=4,
  )
  ds = pipeline.make_dataset(shards, **kwargs)
  full = _take(ds, 6)
  _assert_batches_equal(full, _take(ds, 6))  # a second fresh iterator of the same dataset
  _assert_batches_equal(full, _take(pipeline.make_dataset(shards, **kwargs), 6))
  resumed = _take(pipeline.make_dataset(shards, start_step=4, **kwargs), 2)
  _assert_batches_equal(full[4:], resumed)
  other = _take(pipeline.make_dataset(shards, **{**kwargs, "seed": 6}), 2)
  assert not all(np.array_equal(a["video"], b["video"]) for a, b in zip(full, other))


def test_host_independent_batches_are_the_same_global_batches_on_any_number_of_hosts(shards):
  """Two hosts' slices of each step, stacked, are one host's batch of twice the size; a resumed
  host's stream starts at the same global step; the slices differ between hosts."""
  kwargs = dict(
    mode="finetune",
    num_frames=T,
    image_size=S,
    target_fps=8.0,
    seed=5,
    shuffle_buffer=4,
    host_independent_batches=True,
  )
  one = _take(pipeline.make_dataset(shards, batch_size=4, **kwargs), 3)
  hosts = [
    _take(
      pipeline.make_dataset(shards, batch_size=2, process_index=h, process_count=2, **kwargs), 3
    )
    for h in range(2)
  ]
  stacked = [{k: np.concatenate([a[k], b[k]]) for k in a} for a, b in zip(*hosts)]
  _assert_batches_equal(one, stacked)
  assert not np.array_equal(hosts[0][0]["video"], hosts[1][0]["video"])
  resumed = _take(
    pipeline.make_dataset(
      shards, batch_size=2, process_index=1, process_count=2, start_step=2, **kwargs
    ),
    1,
  )
  _assert_batches_equal(hosts[1][2:], resumed)
  # one host reads the same stream either way: a one-host run may go on with the flag on N hosts
  plain = {**kwargs, "host_independent_batches": False}
  _assert_batches_equal(one, _take(pipeline.make_dataset(shards, batch_size=4, **plain), 3))


def test_eval_views_padding_and_mask(tmp_path):
  path = str(tmp_path / "eval.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    for v in range(5):
      writer.write(_record(v))
  ds = pipeline.make_dataset(
    path,
    mode="eval",
    num_frames=T,
    image_size=S,
    batch_size=4,
    target_fps=10.0,
    num_clips=2,
    num_crops=3,
  )
  batches = list(pipeline.numpy_batches(ds))
  assert len(batches) == 8  # 5 videos x 6 views = 30 -> 8 batches of 4
  assert [int(b["mask"].sum()) for b in batches] == [4] * 7 + [2]
  assert pipeline.eval_num_batches(path, batch_size=4, num_clips=2, num_crops=3) == 8
  rows = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  assert rows["video"].shape == (32, T, S, S, 3) and rows["mask"].dtype == np.bool_
  real = rows["mask"]
  np.testing.assert_array_equal(rows["video_index"][real], np.repeat(np.arange(5), 6))
  np.testing.assert_array_equal(rows["view"][real], np.tile(np.arange(6), 5))
  np.testing.assert_array_equal(rows["label"][real], rows["video_index"][real])
  for key, value in rows.items():  # padding rows are zeros
    assert not np.any(value[~real]), key
  for i in np.flatnonzero(real):
    n, fps = VIDEOS[rows["label"][i]]
    clip, _ = divmod(int(rows["view"][i]), 3)
    expected = sampling.eval_indices_np(n, sampling.stride_for_np(fps, 10.0), T, 2)[clip]
    np.testing.assert_array_equal(rows["frame_indices"][i], expected)
    np.testing.assert_array_equal(_source_frames(rows["video"][i]), expected)
  # Crop positions: 24x32 frames, short side to 16 -> 16x21, crops at x = 0, 2, 5 (start,
  # centre, end). Blue rises 8 per source pixel = 12 per resized pixel, so the crops' mean blue
  # differ by 12 * (2 - 0) and 12 * (5 - 2).
  blue = _pixels(rows["video"][real])[..., 2].mean(axis=(1, 2, 3)).reshape(5, 2, 3)
  np.testing.assert_allclose(blue[..., 1] - blue[..., 0], 24, atol=1.5)
  np.testing.assert_allclose(blue[..., 2] - blue[..., 1], 36, atol=1.5)
  # A second pass gives the same batches.
  _assert_batches_equal(batches, list(pipeline.numpy_batches(ds)))


def test_hosts_get_disjoint_shards_and_equal_eval_steps(shards):
  files = pipeline.list_files(shards)
  host0, host1 = (pipeline.host_files(shards, i, 2) for i in range(2))
  assert not set(host0) & set(host1) and sorted(host0 + host1) == files
  steps = pipeline.eval_num_batches(shards, batch_size=3, process_count=2)
  assert steps == 2  # 4 videos per host, 1 view each
  labels = []
  for i in range(2):
    ds = pipeline.make_dataset(
      shards,
      mode="eval",
      num_frames=T,
      image_size=S,
      batch_size=3,
      process_index=i,
      process_count=2,
      eval_batches=steps + 1,
    )
    batches = list(pipeline.numpy_batches(ds))
    assert len(batches) == steps + 1 and not batches[-1]["mask"].any()
    labels.append({int(l) for b in batches for l, m in zip(b["label"], b["mask"]) if m})
  assert labels == [{0, 1, 4, 5}, {2, 3, 6, 7}]
  with pytest.raises(tf.errors.InvalidArgumentError, match="eval_batches=1"):
    list(
      pipeline.numpy_batches(
        pipeline.make_dataset(
          shards,
          mode="eval",
          num_frames=T,
          image_size=S,
          batch_size=3,
          process_count=2,
          eval_batches=1,
        )
      )
    )


def test_clear_errors(tmp_path, shards):
  pattern = str(tmp_path / "missing-*.tfrecord")
  with pytest.raises(FileNotFoundError, match="missing-"):
    pipeline.make_dataset(pattern, mode="eval", num_frames=T, image_size=S, batch_size=2)
  with pytest.raises(ValueError, match="process 4 of 5 gets no files"):
    pipeline.host_files(shards, 4, 5)
  with pytest.raises(ValueError, match="mode"):
    pipeline.make_dataset(shards, mode="train", num_frames=T, image_size=S, batch_size=2)
  with pytest.raises(ValueError, match="batch_size"):
    pipeline.make_dataset(shards, mode="eval", num_frames=T, image_size=S, batch_size=0)
  # A record with an empty frame list: the error names the record.
  example = tf.train.SequenceExample()
  example.context.feature[fmt.ID].bytes_list.value.append(b"empty-video-7")
  example.context.feature[fmt.FPS].float_list.value.append(25.0)
  example.context.feature[fmt.NUM_FRAMES].int64_list.value.append(0)
  example.feature_lists.feature_list[fmt.FRAMES].SetInParent()
  path = str(tmp_path / "empty.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(example.SerializeToString())
  ds = pipeline.make_dataset(path, mode="eval", num_frames=T, image_size=S, batch_size=2)
  with pytest.raises(pipeline.BadDataError) as e:
    list(pipeline.numpy_batches(ds))
  assert str(e.value) == "bad data: video/id 'empty-video-7': no frames (image/encoded is empty)"


def test_fps_augmentation_draws_a_rate_per_clip_and_reports_it(shards):
  choices = (5.0, 10.0, 20.0)
  ds = pipeline.make_dataset(
    shards,
    mode="pretrain",
    num_frames=T,
    image_size=S,
    batch_size=8,
    target_fps=list(choices),
    seed=3,
  )
  used = set()
  for b in _take(ds, 4):
    for label, idx, stride, clip_fps, video in zip(
      b["label"], b["frame_indices"], b["stride"], b["clip_fps"], b["video"]
    ):
      n, src_fps = VIDEOS[label]
      target = [f for f in choices if np.float32(sampling.stride_for_np(src_fps, f)) == stride]
      assert len(target) == 1, (src_fps, stride)
      used.add(target[0])
      np.testing.assert_allclose(clip_fps, target[0], rtol=1e-6)
      np.testing.assert_array_equal(
        idx, sampling.clip_indices_np(n, sampling.stride_for_np(src_fps, target[0]), T, idx[0])
      )
      np.testing.assert_array_equal(_source_frames(video), idx)
  assert used == set(choices)
  with pytest.raises(ValueError, match="eval takes one target_fps"):
    pipeline.make_dataset(
      shards, mode="eval", num_frames=T, image_size=S, batch_size=2, target_fps=[5.0, 10.0]
    )


def test_segment_sampling_train_and_eval(shards):
  ds = pipeline.make_dataset(
    shards,
    mode="finetune",
    num_frames=T,
    image_size=S,
    batch_size=8,
    temporal="segment",
    flip=False,
    seed=2,
  )
  for b in _take(ds, 2):
    for label, idx, stride, clip_fps, video in zip(
      b["label"], b["frame_indices"], b["stride"], b["clip_fps"], b["video"]
    ):
      n, src_fps = VIDEOS[label]
      assert stride == np.float32(n / T)
      np.testing.assert_allclose(clip_fps, src_fps * T / n, rtol=1e-5)
      width = n // T
      if width:
        assert np.all(idx // width == np.arange(T)), (n, idx)
      else:
        np.testing.assert_array_equal(idx, np.arange(T) * n // T)
      np.testing.assert_array_equal(_source_frames(video), idx)
  ev = pipeline.make_dataset(
    shards,
    mode="eval",
    num_frames=T,
    image_size=S,
    batch_size=6,
    temporal="segment",
    num_clips=2,
    num_crops=3,
  )
  for b in pipeline.numpy_batches(ev):
    for label, view, idx, video, real in zip(
      b["label"], b["view"], b["frame_indices"], b["video"], b["mask"]
    ):
      if real:
        expected = sampling.segment_eval_indices_np(VIDEOS[label][0], T, 2)[view // 3]
        np.testing.assert_array_equal(idx, expected)
        np.testing.assert_array_equal(_source_frames(video), expected)


@pytest.mark.parametrize("mode", ["finetune", "pretrain"])
def test_repeated_augmentation_gives_consecutive_views_of_one_decoded_clip(shards, mode):
  """`num_sample=2`: fine-tuning's repeated augmentation, and pre-training's repeated sampling
  (VideoMAE v2, MGMAE): one decode, two differently cropped clips."""
  kwargs = dict(mode=mode, num_frames=T, image_size=S, batch_size=4, num_sample=2, seed=4)
  batches = _take(pipeline.make_dataset(shards, **kwargs), 3)
  differ = 0
  for b in batches:
    for k in ("label", "frame_indices", "fps", "stride", "clip_fps"):
      np.testing.assert_array_equal(b[k][0::2], b[k][1::2], err_msg=k)
    differ += sum(not np.array_equal(b["video"][i], b["video"][i + 1]) for i in (0, 2))
    for idx, video in zip(b["frame_indices"], b["video"]):
      np.testing.assert_array_equal(_source_frames(video), idx)
  assert differ >= 4  # different crops (and flips) of the same frames
  assert len({int(l) for b in batches for l in b["label"]}) >= 4  # 6 videos, mostly distinct
  # Resume skips batch_size / num_sample videos per step.
  _assert_batches_equal(
    batches[2:], _take(pipeline.make_dataset(shards, start_step=2, **kwargs), 1)
  )
  with pytest.raises(ValueError, match="multiple of num_sample"):
    pipeline.make_dataset(shards, **{**kwargs, "batch_size": 3})


def test_rand_augment_spec_and_mode_errors(shards):
  assert pipeline.parse_rand_augment("") is None
  assert pipeline.parse_rand_augment("rand-m7-n4-mstd0.5-inc1") == dict(
    magnitude=7.0, num_layers=4, magnitude_std=0.5
  )
  assert pipeline.parse_rand_augment("rand-m9-n2-p0.7") == dict(
    magnitude=9.0, num_layers=2, prob=0.7
  )
  for bad, match in [("auto-m7", "rand-m7"), ("rand-m7-x3", "'x3'"), ("rand-m7-inc0", "inc1")]:
    with pytest.raises(ValueError, match=match):
      pipeline.parse_rand_augment(bad)
  with pytest.raises(ValueError, match="fine-tuning augmentations"):
    pipeline.make_dataset(
      shards, mode="pretrain", num_frames=T, image_size=S, batch_size=2, random_erase=0.25
    )
  with pytest.raises(ValueError, match="temporal"):
    pipeline.make_dataset(
      shards, mode="eval", num_frames=T, image_size=S, batch_size=2, temporal="sparse"
    )


def test_random_erasing_and_rand_augment_change_only_what_they_should(shards):
  kwargs = dict(mode="finetune", num_frames=T, image_size=S, batch_size=8, seed=9)
  plain = _take(pipeline.make_dataset(shards, **kwargs), 1)[0]
  erased = _take(pipeline.make_dataset(shards, random_erase=1.0, **kwargs), 1)[0]
  for k in ("label", "frame_indices"):
    np.testing.assert_array_equal(plain[k], erased[k])
  np.testing.assert_array_equal(plain["video"], erased["video"])  # the host erases nothing
  assert not plain["erase_box"][:, 2:].any() if "erase_box" in plain else True
  assert erased["erase_box"][:, 2:].all()  # prob 1: every clip gets a box (height, width > 0)
  for a, b in zip(_model(plain), _model(erased)):  # one box per clip, the same in every frame
    changed = np.any(a != b, axis=-1)  # [T, S, S]
    assert changed.any(axis=(1, 2)).all()
    np.testing.assert_array_equal(changed, np.broadcast_to(changed[0], changed.shape))
    rows, cols = np.flatnonzero(changed[0].any(1)), np.flatnonzero(changed[0].any(0))
    assert changed[0].sum() == len(rows) * len(cols)  # a rectangle
    assert np.ptp(rows) + 1 == len(rows) and np.ptp(cols) + 1 == len(cols)
  augmented = _take(
    pipeline.make_dataset(shards, rand_augment="rand-m9-n4-mstd0.5-inc1-p1.0", **kwargs), 1
  )[0]
  np.testing.assert_array_equal(plain["frame_indices"], augmented["frame_indices"])
  assert sum(not np.allclose(a, b) for a, b in zip(plain["video"], augmented["video"])) >= 6


def test_the_pipeline_runs_on_its_own_pool_sized_from_the_cores(shards):
  kwargs = dict(mode="finetune", num_frames=T, image_size=S, batch_size=2)
  ds = pipeline.make_dataset(shards, **kwargs)
  opts = ds.options()
  assert opts.threading.private_threadpool_size == pipeline.host_cores() >= 1
  assert opts.threading.max_intra_op_parallelism == 1 and opts.deterministic
  assert 0 < opts.autotune.ram_budget
  assert (
    pipeline.make_dataset(shards, threads=3, **kwargs).options().threading.private_threadpool_size
    == 3
  )
  evaluation = pipeline.make_dataset(shards, mode="eval", num_frames=T, image_size=S, batch_size=2)
  assert evaluation.options().threading.private_threadpool_size == pipeline.host_cores()
  with pytest.raises(ValueError, match="threads must be"):
    pipeline.make_dataset(shards, threads=-1, **kwargs)
  one = _take(pipeline.make_dataset(shards, threads=1, seed=3, **kwargs), 1)
  _assert_batches_equal(one, _take(pipeline.make_dataset(shards, threads=2, seed=3, **kwargs), 1))
