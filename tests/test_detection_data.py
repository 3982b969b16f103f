"""Keyframe-centred detection clips: exact indices, boxes from the rendered scene, multi-label merge."""

import numpy as np
import pytest
import tensorflow as tf

from mgvm.data import detection
from mgvm.data import format as fmt
from mgvm.datasets import synthetic as sy

TINY = sy.SyntheticConfig(
  image_size=32,
  min_seconds=1.0,
  max_seconds=1.5,
  min_fps=10.0,
  max_fps=20.0,
  min_actors=1,
  max_actors=3,
)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("det"))
  sy.ensure_dataset(out, TINY, splits={"train": 3, "val": 3}, seed=0, log=None, workers=1)
  return out


def test_keyframe_clip_indices_by_hand():
  # keyframe 10, stride 2, 8 frames: offsets (j - 4) * 2 = -8..6, clamped to [0, 14]
  got = detection.keyframe_clip_indices(15, 10, 2.0, 8).numpy()
  np.testing.assert_array_equal(got, [2, 4, 6, 8, 10, 12, 14, 14])
  # fractional stride 1.5 rounds half up: floor((j-4)*1.5 + .5) = -6,-4,-3,-1,0,2,3,5
  got = detection.keyframe_clip_indices(40, 20, 1.5, 8).numpy()
  np.testing.assert_array_equal(got, [14, 16, 17, 19, 20, 22, 23, 25])
  np.testing.assert_array_equal(detection.eval_keyframes(tf.range(10), 2).numpy(), [2, 7])
  np.testing.assert_array_equal(detection.eval_keyframes([3, 7, 9], 0).numpy(), [3, 7, 9])


def test_keyframes_are_the_annotated_frames(tmp_path):
  """Only frames 3 and 7 of 10 carry boxes (AVA-like): train and eval use only those."""
  jpeg = sy.encode_jpeg(np.zeros((1, 16, 16, 3), np.uint8))[0]
  boxes = [np.zeros(0, np.float32)] * 10
  labels = [np.zeros(0, np.int64)] * 10
  boxes[3], labels[3] = np.array([0.1, 0.1, 0.5, 0.5], np.float32), np.array([1])
  boxes[7], labels[7] = (
    np.array([0.2, 0.2, 0.6, 0.6, 0.0, 0.0, 0.3, 0.3], np.float32),
    np.array([0, 2]),
  )
  record = fmt.encode_example(
    video_id="v",
    fps=10.0,
    jpeg_frames=[jpeg] * 10,
    height=16,
    width=16,
    annotations={fmt.REGION_BBOX: boxes, fmt.REGION_LABEL: labels},
  )
  path = str(tmp_path / "x.tfrecord")
  with tf.io.TFRecordWriter(path) as w:
    w.write(record)
  kw = dict(num_frames=4, image_size=16, num_classes=3, max_boxes=2, frame_stride=1)
  ev = list(
    detection.make_detection_dataset(
      [path], mode="eval", batch_size=2, keyframes_per_video=0, **kw
    ).as_numpy_iterator()
  )
  assert ev[0]["keyframe"].tolist() == [3, 7] and ev[0]["box_valid"].sum() == 3
  train = detection.make_detection_dataset(
    [path], mode="train", batch_size=4, shuffle_buffer=1, **kw
  ).as_numpy_iterator()
  seen = {int(k) for _ in range(5) for k in next(train)["keyframe"]}
  assert seen == {3, 7}


def test_repeated_boxes_merge_into_multi_hot_and_padding():
  boxes = np.array(
    [0.1, 0.1, 0.5, 0.5, 0.2, 0.2, 0.9, 0.9, 0.1, 0.1, 0.5, 0.5, 0.0, 0.0, 1.2, 0.3], np.float32
  )
  labels = np.array([3, 1, 0, 7])  # box 0 twice (labels 3, 0); 7 is out of range (ignored)
  b, valid, actions, truncated = detection.keyframe_targets(
    boxes, labels, image_size=10, max_boxes=4, num_classes=5
  )
  np.testing.assert_allclose(
    b.numpy(), [[1, 1, 5, 5], [2, 2, 9, 9], [0, 0, 10, 3], [0, 0, 0, 0]], atol=1e-5
  )
  np.testing.assert_array_equal(valid.numpy(), [True, True, True, False])
  np.testing.assert_array_equal(
    actions.numpy(), [[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
  )
  assert int(truncated) == 0
  _, valid, _, truncated = detection.keyframe_targets(
    boxes, labels, image_size=10, max_boxes=2, num_classes=5
  )
  assert valid.numpy().all() and int(truncated) == 1
  # AVA's 1-based ids (label_offset=1): id 1 is class 0, id 5 class 4; id 0 is left out
  _, _, actions, _ = detection.keyframe_targets(
    boxes, np.array([1, 5, 0, 2]), image_size=10, max_boxes=4, num_classes=5, label_offset=1
  )
  np.testing.assert_array_equal(
    actions.numpy(), [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]
  )


def test_eval_clips_carry_the_rendered_keyframe_boxes(tiny_set):
  files = sy.split_files(tiny_set, "val")
  ds = detection.make_detection_dataset(
    files,
    mode="eval",
    num_frames=8,
    image_size=32,
    batch_size=4,
    num_classes=len(TINY.classes),
    max_boxes=3,
    frame_stride=2,
    keyframes_per_video=2,
  )
  batches = list(ds.as_numpy_iterator())
  assert len(batches) == 2  # 3 videos x 2 keyframes = 6 clips, batch 4
  got = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  assert got["mask"].tolist() == [True] * 6 + [False] * 2
  for row in range(6):
    v = int(got["video_index"][row])
    video = sy.render_video(TINY, 0, "val", v)
    n = len(video.frames)
    k = int(got["keyframe"][row])
    assert k == int(((row % 2) + 0.5) * n / 2)
    want_idx = np.clip(k + (np.arange(8) - 4) * 2, 0, n - 1)
    np.testing.assert_array_equal(got["frame_indices"][row], want_idx)
    actors = video.actor_boxes[k]
    count = len(actors)
    np.testing.assert_allclose(got["boxes"][row, :count], np.clip(actors, 0, 1) * 32, atol=1e-4)
    assert got["box_valid"][row].tolist() == [True] * count + [False] * (3 - count)
    labels = video.actor_labels[k]
    np.testing.assert_array_equal(np.argmax(got["actions"][row, :count], -1), labels)
  assert got["video"].shape == (8, 8, 32, 32, 3)


def test_train_flip_mirrors_boxes(tiny_set):
  files = sy.split_files(tiny_set, "train")
  kw = dict(
    mode="train",
    num_frames=8,
    image_size=32,
    batch_size=3,
    max_boxes=3,
    num_classes=len(TINY.classes),
    frame_stride=2,
    seed=4,
    shuffle_buffer=1,
  )
  plain = next(detection.make_detection_dataset(files, **kw).as_numpy_iterator())
  flipped = next(detection.make_detection_dataset(files, flip=True, **kw).as_numpy_iterator())
  np.testing.assert_array_equal(plain["keyframe"], flipped["keyframe"])
  # the host leaves the uint8 frames alone; the flag says which clips the device mirrors
  assert flipped["video"].dtype == np.uint8
  np.testing.assert_array_equal(flipped["video"], plain["video"])
  assert not plain["flip"].any() and 1 <= flipped["flip"].sum() < 3  # this seed flips some
  for i in range(3):
    v = plain["box_valid"][i]
    b = plain["boxes"][i][v]
    want = np.stack([32 - b[:, 2], b[:, 1], 32 - b[:, 0], b[:, 3]], -1) if flipped["flip"][i] else b
    np.testing.assert_allclose(flipped["boxes"][i][v], want, atol=1e-5)
  # on the device: the flagged clips' frames mirror, exactly as the boxes did
  from mgvm.data import device_ops

  on_device = np.asarray(
    device_ops.model_video({"video": flipped["video"], "flip": flipped["flip"]})
  )
  mirrored = np.where(
    flipped["flip"][:, None, None, None, None], plain["video"][:, :, :, ::-1], plain["video"]
  )
  np.testing.assert_array_equal(on_device, np.asarray(device_ops.model_video({"video": mirrored})))
  assert plain["boxes"].shape == (3, 3, 4)


def test_eval_batches_count_the_keyframes_of_the_busiest_host(tmp_path):
  """Annotated frames per video 2, 1, 3 (files 0, 1, 2): with every annotated frame a keyframe,
  host 0 of 2 (files 0 and 2) has 5 keyframes, host 1 has 1; batch 2 → 3 batches each, host 1's
  last two fully masked."""
  jpeg = sy.encode_jpeg(np.zeros((1, 16, 16, 3), np.uint8))[0]
  paths = []
  for f, annotated in enumerate(([2, 5], [1], [0, 4, 8])):
    boxes = [np.zeros(0, np.float32)] * 10
    labels = [np.zeros(0, np.int64)] * 10
    for k in annotated:
      boxes[k], labels[k] = np.array([0.1, 0.1, 0.5, 0.5], np.float32), np.array([0])
    path = str(tmp_path / f"val-{f}.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
      w.write(
        fmt.encode_example(
          video_id=f"v{f}",
          fps=10.0,
          jpeg_frames=[jpeg] * 10,
          height=16,
          width=16,
          annotations={fmt.REGION_BBOX: boxes, fmt.REGION_LABEL: labels},
        )
      )
    paths.append(path)
  count = lambda k: detection.eval_num_batches(  # noqa: E731
    paths, batch_size=2, keyframes_per_video=k, process_count=2
  )
  assert count(0) == 3 and count(1) == 1 and count(3) == 3  # k=3: host 0 has 6 → 3
  kw = dict(num_frames=4, image_size=16, num_classes=1, max_boxes=2, frame_stride=1)
  per_host = [
    list(
      detection.make_detection_dataset(
        paths,
        mode="eval",
        batch_size=2,
        keyframes_per_video=0,
        process_index=h,
        process_count=2,
        eval_batches=3,
        **kw,
      ).as_numpy_iterator()
    )
    for h in range(2)
  ]
  assert [len(b) for b in per_host] == [3, 3]
  assert [b["mask"].tolist() for b in per_host[0]] == [[True, True]] * 2 + [[True, False]]
  assert [b["mask"].tolist() for b in per_host[1]] == [[True, False]] + [[False, False]] * 2
  keyframes = [k for b in per_host[0] for k, m in zip(b["keyframe"], b["mask"]) if m]
  assert keyframes == [2, 5, 0, 4, 8]
  with pytest.raises(ValueError, match="eval_batches is for mode='eval'"):
    detection.make_detection_dataset(paths, mode="train", batch_size=2, eval_batches=3, **kw)
