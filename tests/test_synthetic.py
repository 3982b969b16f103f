"""The synthetic motion data set: determinism, fps-invariant motion, class signatures, exact flow,
records, dataset_info.json, reuse by ensure_dataset, the CLI and the tfds builder."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mgvm.data import format as fmt
from mgvm.datasets import synthetic as sy
from mgvm.datasets.synthetic import scene as scene_lib

TINY = sy.SyntheticConfig(
  image_size=32, min_seconds=0.5, max_seconds=1.0, min_fps=10.0, max_fps=20.0
)
SPLITS = {"train": 5, "val": 2}


def _solo(scene: sy.Scene, motion: str | None = None) -> sy.Scene:
  """Actor 0 alone (no distractors), optionally with another class."""
  scene = dataclasses.replace(scene, objects=scene.objects[:1], depth=(0,), num_actors=1)
  return scene if motion is None else scene.with_motion(0, motion)


def _interior(mask: np.ndarray) -> np.ndarray:
  """`mask` [..., H, W] eroded by one pixel (4-neighbourhood)."""
  out = mask.copy()
  out[..., 1:, :] &= mask[..., :-1, :]
  out[..., :-1, :] &= mask[..., 1:, :]
  out[..., :, 1:] &= mask[..., :, :-1]
  out[..., :, :-1] &= mask[..., :, 1:]
  out[..., [0, -1], :] = False
  out[..., :, [0, -1]] = False
  return out


def _warp_back(frame: np.ndarray, flow: np.ndarray) -> np.ndarray:
  """Bilinear sample of `frame` [H, W, 3] at p + flow(p): frame i+1 pulled back onto frame i."""
  h, w = frame.shape[:2]
  y, x = np.mgrid[0:h, 0:w].astype(np.float64)
  sx, sy_ = np.clip(x + flow[..., 0], 0, w - 1.001), np.clip(y + flow[..., 1], 0, h - 1.001)
  x0, y0 = np.floor(sx).astype(int), np.floor(sy_).astype(int)
  fx, fy = (sx - x0)[..., None], (sy_ - y0)[..., None]
  f = frame.astype(np.float64)
  return (f[y0, x0] * (1 - fx) + f[y0, x0 + 1] * fx) * (1 - fy) + (
    f[y0 + 1, x0] * (1 - fx) + f[y0 + 1, x0 + 1] * fx
  ) * fy


def _records(path: str) -> list[bytes]:
  return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def _centre(boxes: np.ndarray) -> np.ndarray:
  return (boxes[..., :2] + boxes[..., 2:]) / 2


# ------------------------------------------------------------------------------ config


def test_config_rejects_bad_values_by_name():
  with pytest.raises(ValueError, match="'jump'"):
    sy.SyntheticConfig(classes=("still", "jump"))
  with pytest.raises(ValueError, match="image_size"):
    sy.SyntheticConfig(image_size=8)
  with pytest.raises(ValueError, match="min_fps"):
    sy.SyntheticConfig(min_fps=30, max_fps=20)
  with pytest.raises(ValueError, match="speed"):
    sy.SyntheticConfig(speed=(0.2, 0.1))
  with pytest.raises(ValueError, match="fewer than 2 frames"):
    sy.SyntheticConfig(min_seconds=0.1, min_fps=10)
  with pytest.raises(ValueError, match="'bad-name'"):
    sy.render_video(TINY, 0, "bad-name", 0)
  with pytest.raises(ValueError, match="'jump'"):
    sy.sample_scene(TINY, 0, "train", 0).with_motion(0, "jump")
  with pytest.raises(ValueError, match="fps must be > 0, got 0"):
    sy.render_video(TINY, 0, "train", 0, fps=0)
  with pytest.raises(ValueError, match="background_detail"):
    sy.SyntheticConfig(background_detail=-1)
  assert sy.SyntheticConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
  assert sy.CLASSES == (
    "still",
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "move_up_left",
    "move_up_right",
    "move_down_left",
    "move_down_right",
    "rotate_cw",
    "rotate_ccw",
    "grow",
    "shrink",
    "bounce",
    "sway",
  )


def test_the_configs_synthetic_block_is_the_data_sets_defaults():
  """configs/common.py takes every synthetic default from `mgvm.datasets.synthetic.config`
  (loading it without TensorFlow: `tests/test_device_ops.py` checks that): the block rebuilds
  the default `SyntheticConfig`, with the default split sizes, and overrides land."""
  from configs import common

  block = common.synthetic().to_dict()
  counts = {split: block.pop(f"num_{split}") for split in sy.DEFAULT_SPLITS}
  assert counts == sy.DEFAULT_SPLITS and block.pop("seed") == 0
  assert block.pop("videos_per_shard") == sy.VIDEOS_PER_SHARD
  assert sy.SyntheticConfig(**block) == sy.SyntheticConfig()
  assert tuple(block["classes"]) == sy.CLASSES
  assert common.synthetic(max_actors=2).max_actors == 2


def test_background_detail_scales_the_fine_texture_only():
  """Same scene, same colours; detail 0 leaves a smooth blend (small pixel-to-pixel steps)."""

  def background(detail):
    config = dataclasses.replace(TINY, background_detail=detail)
    return sy.sample_scene(config, 0, "train", 3).background.astype(np.float64)

  def roughness(b):
    return np.abs(np.diff(b, axis=0)).mean() + np.abs(np.diff(b, axis=1)).mean()

  smooth, default, strong = background(0.0), background(1.0), background(2.0)
  assert roughness(smooth) < 0.5 * roughness(default) < 0.5 * roughness(strong)
  # Outside clipping the texture is linear in the strength: default = mean of the other two.
  inside = (strong > 0) & (strong < 255) & (smooth > 0) & (smooth < 255)
  np.testing.assert_allclose(default[inside], (smooth[inside] + strong[inside]) / 2, atol=1e-3)


def test_grating_backgrounds_give_every_patch_contrast_and_keep_default_names():
  """background_pattern="gratings": every 8 x 8 patch of the background varies by well over
  JPEG's rounding (the normalized-pixel target is a pattern, not noise), unlike the smooth noise
  background, whose low-contrast patches are mostly rounding; the default keeps the identity
  (and the cache directory name) of sets written before the option existed."""
  from mgvm.datasets.synthetic import write

  def patch_std(pattern):
    config = dataclasses.replace(TINY, background_detail=0.0, background_pattern=pattern)
    stds = []
    for index in range(8):
      b = sy.sample_scene(config, 0, "train", index).background
      patches = b[:32, :32].reshape(4, 8, 4, 8, 3).transpose(0, 2, 1, 3, 4).reshape(16, -1, 3)
      stds.append(patches.std(axis=1).mean(axis=-1))
    return np.concatenate(stds)

  gratings, smooth = patch_std("gratings"), patch_std("noise")
  assert np.percentile(gratings, 10) > 5.0 > np.percentile(smooth, 50), (gratings, smooth)
  assert "background_pattern" not in write._identity(TINY, SPLITS, 0)["config"]
  grating_config = dataclasses.replace(TINY, background_pattern="gratings")
  assert write._identity(grating_config, SPLITS, 0)["config"]["background_pattern"] == "gratings"
  with pytest.raises(ValueError, match="background_pattern"):
    sy.SyntheticConfig(background_pattern="stripes")


@pytest.mark.slow
def test_rendering_needs_no_tensorflow():
  code = (
    "import sys, mgvm.datasets.synthetic as s; "
    "v = s.render_video(s.SyntheticConfig(image_size=16, min_seconds=0.2, max_seconds=0.2),"
    " 0, 'train', 0, with_flow=True); assert 'tensorflow' not in sys.modules"
  )
  subprocess.run(
    [sys.executable, "-c", code],
    check=True,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  )


# ------------------------------------------------------------------------------ determinism


def test_same_seed_same_video_other_index_or_split_other_video():
  a = sy.render_video(TINY, 3, "train", 7, with_flow=True)
  b = sy.render_video(TINY, 3, "train", 7, with_flow=True)
  assert a.id == b.id and a.fps == b.fps and a.label == b.label
  for field in (
    "frames",
    "actor_boxes",
    "actor_labels",
    "object_boxes",
    "object_displacement",
    "flow",
  ):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert sy.encode_video(a) == sy.encode_video(b)
  for other in (
    sy.render_video(TINY, 3, "train", 8),
    sy.render_video(TINY, 3, "val", 7),
    sy.render_video(TINY, 4, "train", 7),
  ):
    assert other.frames.shape != a.frames.shape or not np.array_equal(other.frames, a.frames)


def test_labels_are_balanced_per_block_and_fps_varies():
  c = len(TINY.classes)
  labels = [sy.clip_label(TINY, 0, "train", i) for i in range(2 * c)]
  assert sorted(labels[:c]) == list(range(c)) and sorted(labels[c:]) == list(range(c))
  assert labels[:c] != labels[c:]  # a fresh permutation per block
  scenes = [sy.sample_scene(TINY, 0, "train", i) for i in range(40)]
  fps = np.array([s.fps for s in scenes])
  assert fps.min() >= 10 and fps.max() <= 20 and fps.std() > 1
  assert all(float(np.float32(f)) == f for f in fps)  # stored exactly as float32
  assert all(s.labels()[0] == sy.clip_label(TINY, 0, "train", i) for i, s in enumerate(scenes))


def test_fps_override_shows_the_same_motion_at_the_same_times():
  config = dataclasses.replace(TINY, camera_pan=True, max_actors=2, max_seconds=2.0)
  for index in range(4):
    scene = sy.sample_scene(config, 0, "train", index)
    slow, fast = sy.render_scene(scene, fps=10.0), sy.render_scene(scene, fps=30.0)
    n = slow.num_frames
    assert 3 * (n - 1) < fast.num_frames <= 3 * n + 2
    np.testing.assert_allclose(fast.object_boxes[::3][:n], slow.object_boxes, atol=1e-6)
    np.testing.assert_allclose(fast.actor_boxes[::3][:n], slow.actor_boxes, atol=1e-6)
    diff = np.abs(fast.frames[::3][:n].astype(int) - slow.frames)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    # Per-frame displacement scales with 1 / fps: 3 fast steps make one slow step.
    steps = (
      fast.object_displacement[: 3 * (slow.num_frames - 1)]
      .reshape(slow.num_frames - 1, 3, -1, 2)
      .sum(1)
    )
    np.testing.assert_allclose(steps, slow.object_displacement[:-1], atol=1e-4)


# ------------------------------------------------------------------------------ motion


def test_one_frame_does_not_tell_the_classes_apart():
  config = dataclasses.replace(TINY, max_actors=2)
  for index in range(3):
    scene = sy.sample_scene(config, 1, "train", index)
    videos = [sy.render_scene(scene.with_motion(0, name), fps=10.0) for name in sy.CLASSES]
    for v in videos[1:]:
      np.testing.assert_array_equal(v.frames[0], videos[0].frames[0])
      np.testing.assert_array_equal(v.object_boxes[0], videos[0].object_boxes[0])
    moved = [not np.array_equal(v.frames[-1], videos[0].frames[-1]) for v in videos[1:]]
    assert all(moved)  # every class but "still" changes the picture
  # Sampling never sees the class: one-class configs give the same scenes up to the motion.
  for index in range(3):
    scenes = [
      sy.sample_scene(dataclasses.replace(TINY, classes=(name,)), 0, "train", index)
      for name in sy.CLASSES
    ]
    first = sy.render_scene(scenes[0], fps=10.0).frames[0]
    for name, scene in zip(sy.CLASSES, scenes):
      assert scene.objects[0].motion == name
      for field in ("center", "radius", "angle", "speed", "spin", "scale_rate", "amplitude"):
        assert getattr(scene.objects[0], field) == getattr(scenes[0].objects[0], field), field
      np.testing.assert_array_equal(sy.render_scene(scene, fps=10.0).frames[0], first)


def test_each_class_has_its_motion_signature():
  config = dataclasses.replace(TINY, max_seconds=3.0, min_seconds=3.0)
  scene = _solo(sy.sample_scene(config, 0, "train", 2))
  actor, s, fps = scene.objects[0], config.image_size, 10.0
  assert config.speed[0] * s <= actor.speed <= config.speed[1] * s  # no cap needed here
  t = np.arange(scene.num_frames(fps)) / fps
  for name in sy.CLASSES:
    v = sy.render_scene(scene.with_motion(0, name), fps=fps)
    assert v.label_text == name and (v.actor_labels == sy.CLASSES.index(name)).all()
    box = v.actor_boxes[:, 0].astype(np.float64)
    centre, area = _centre(box) * s, (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    move = centre - centre[0]
    assert (box >= 0).all() and (box <= 1).all(), name  # fully inside, all the time
    if name == "still":
      np.testing.assert_array_equal(box, np.broadcast_to(box[0], box.shape))
      assert not v.object_displacement.any()
    elif name.startswith("move_"):
      direction = np.array(scene_lib._DIRECTIONS[name])
      np.testing.assert_allclose(move, actor.speed * t[:, None] * direction, atol=1e-3)
      np.testing.assert_allclose(
        v.object_displacement[:, 0], np.tile(actor.speed / fps * direction, (len(t), 1)), atol=1e-4
      )
    elif name in ("rotate_cw", "rotate_ccw"):
      _, angles, _ = scene.with_motion(0, name).poses(t)
      sign = 1 if name == "rotate_cw" else -1
      np.testing.assert_allclose(np.diff(angles[:, 0]), sign * actor.spin / fps)
      assert not np.allclose(box, box[0])  # a non-symmetric shape: its box changes
    elif name == "grow":
      assert (np.diff(area) > 0).all()
    elif name == "shrink":
      assert (np.diff(area) < 0).all()
    elif name in ("bounce", "sway"):
      axis = 1 if name == "bounce" else 0
      assert np.abs(move[:, 1 - axis]).max() < 1e-6
      assert np.abs(move[:, axis]).max() > 0.8 * actor.amplitude
      assert (np.diff(np.sign(np.diff(move[:, axis]))) != 0).any()  # it turns back
  # Rotation direction from the rendered flow: screen-clockwise is r x flow > 0 (y down).
  for name, sign in (("rotate_cw", 1), ("rotate_ccw", -1)):
    v = sy.render_scene(scene.with_motion(0, name), fps=fps, with_flow=True)
    c = scene.objects[0].center
    y, x = np.mgrid[0:s, 0:s] + 0.5
    cross = (x - c[0]) * v.flow[0, ..., 1] - (y - c[1]) * v.flow[0, ..., 0]
    moving = np.abs(v.flow[0]).sum(-1) > 0
    assert moving.sum() > 20 and (np.sign(cross[moving]) == sign).mean() > 0.99


def test_everything_stays_inside_and_distractors_are_slow():
  config = dataclasses.replace(TINY, max_actors=3, max_distractors=3, max_seconds=3.0)
  for index in range(12):
    scene = sy.sample_scene(config, 5, "test", index)
    times = np.linspace(0, scene.duration, 200)
    centres, _, scales = scene.poses(times)
    for i, obj in enumerate(scene.objects):
      reach = obj.radius * scales[:, i]
      assert (centres[:, i] - reach[:, None] >= 0).all(), (index, i, obj.motion)
      assert (centres[:, i] + reach[:, None] <= config.image_size).all(), (index, i, obj.motion)
      if i >= scene.num_actors:
        assert obj.motion == sy.DISTRACTOR
        assert np.hypot(*obj.drift) <= config.distractor_speed[1] * config.image_size + 1e-9
        assert np.abs(obj.jitter[:, :2]).max() <= config.distractor_jitter[1] * config.image_size
    v = sy.render_scene(scene, fps=10.0)
    assert v.actor_boxes.shape == (v.num_frames, scene.num_actors, 4)
    assert v.object_boxes.shape == (v.num_frames, len(scene.objects), 4)
    np.testing.assert_array_equal(v.object_boxes[:, : scene.num_actors], v.actor_boxes)
    assert v.actor_labels.shape == (v.num_frames, scene.num_actors)
    assert v.label == v.actor_labels[0, 0]


# ------------------------------------------------------------------------------ flow


def test_flow_of_a_translation_is_exact():
  config = dataclasses.replace(TINY, image_size=48, min_seconds=1.0, max_seconds=1.0)
  base = _solo(sy.sample_scene(config, 0, "val", 1), "move_right")
  # One pixel per frame: frame i+1 is frame i shifted right inside the actor.
  scene = dataclasses.replace(
    base, objects=(dataclasses.replace(base.objects[0], speed=8.0, center=(16.0, 24.0)),)
  )
  v = sy.render_scene(scene, fps=8.0, with_flow=True)
  assert v.flow.shape == (v.num_frames - 1, 48, 48, 2)
  on = (v.flow == (1.0, 0.0)).all(-1)
  assert ((v.flow == 0).all(-1) | on).all()  # background still, actor exactly (1, 0)
  inner = _interior(on)
  assert inner.sum() > 50
  for i in range(v.num_frames - 1):
    y, x = np.nonzero(inner[i])
    diff = np.abs(v.frames[i + 1][y, x + 1].astype(int) - v.frames[i][y, x])
    assert diff.max() <= 1
  # Any speed: the flow inside a translating actor equals its displacement.
  v = sy.render_scene(base, fps=13.0, with_flow=True)
  moving = (v.flow != 0).any(-1)
  assert moving.sum() > 50
  for i in range(v.num_frames - 1):
    want = np.broadcast_to(v.object_displacement[i, 0], (moving[i].sum(), 2))
    np.testing.assert_array_equal(v.flow[i][moving[i]], want)


@pytest.mark.parametrize("motion, step", [("rotate_cw", "quarter turn"), ("grow", "x3")])
def test_flow_of_a_rotation_or_scaling_is_exact(motion, step):
  config = dataclasses.replace(TINY, image_size=48)
  base = _solo(sy.sample_scene(config, 0, "train", 4), motion)
  fps = 4.0  # per frame: a quarter turn or 3x, about a pixel corner: pixel centres map to centres
  radius = 7.0 if motion == "grow" else 10.0  # 21 px after growing: still inside
  actor = dataclasses.replace(
    base.objects[0],
    center=(24.0, 24.0),
    spin=np.pi / 2 * fps,
    scale_rate=np.log(3.0) * fps,
    radius=radius,
  )
  v = sy.render_scene(
    dataclasses.replace(base, objects=(actor,), duration=0.5), fps=fps, with_flow=True
  )
  assert v.num_frames == 2
  flow = v.flow[0]
  on = (flow != 0).any(-1)
  np.testing.assert_allclose(flow[on], np.round(flow[on]), atol=1e-4)
  y, x = np.nonzero(_interior(on))
  assert len(y) > 40
  d = np.round(flow[y, x]).astype(int)
  diff = np.abs(v.frames[1][y + d[:, 1], x + d[:, 0]].astype(int) - v.frames[0][y, x])
  assert diff.max() <= 1
  assert np.abs(v.frames[1].astype(int) - v.frames[0]).max() > 50  # it did move


@pytest.mark.parametrize("motion", ["rotate_ccw", "shrink", "move_down_left", "bounce"])
def test_flow_warps_the_next_frame_back_best(motion):
  config = dataclasses.replace(
    TINY, image_size=64, min_seconds=1.0, max_seconds=1.0, camera_pan=True, pan_speed=(0.1, 0.1)
  )
  scene = _solo(sy.sample_scene(config, 0, "train", 3), motion)
  v = sy.render_scene(scene, fps=12.0, with_flow=True)
  pan = v.flow[:, :1, :1]
  np.testing.assert_allclose(
    pan[:, 0, 0], np.tile(np.asarray(scene.pan) / 12.0, (len(pan), 1)), rtol=1e-5
  )
  actor = _interior(np.abs(v.flow - pan).sum(-1) > 0)
  background = _interior(np.abs(v.flow - pan).sum(-1) == 0)
  assert actor.sum() > 100 * len(actor) // 2
  error = {}
  for k in (0.0, 0.5, 1.0, 1.5):  # the true flow, and its actor part scaled by k
    e = [
      np.abs(_warp_back(v.frames[i + 1], pan[i] + k * (v.flow[i] - pan[i])) - v.frames[i]).mean(-1)
      for i in range(v.num_frames - 1)
    ]
    error[k] = np.concatenate([ei[m] for ei, m in zip(e, actor)]).mean()
    if k == 1.0:
      still = np.concatenate(
        [
          np.abs(v.frames[i + 1].astype(float) - v.frames[i]).mean(-1)[background[i]]
          for i in range(v.num_frames - 1)
        ]
      ).mean()
      assert np.concatenate([ei[m] for ei, m in zip(e, background)]).mean() < 0.5 * still
  assert error[1.0] < min(error[0.5], error[1.5]) and error[1.0] < 0.5 * error[0.0], error


def test_flow_follows_the_top_most_object():
  scene = sy.sample_scene(dataclasses.replace(TINY, min_distractors=1), 0, "train", 0)
  actor = dataclasses.replace(scene.objects[0], motion="move_right", center=(16.0, 16.0))
  other = dataclasses.replace(scene.objects[scene.num_actors], center=(16.0, 16.0))
  for depth, expected in (((1, 0), "actor"), ((0, 1), "distractor")):
    s = dataclasses.replace(scene, objects=(actor, other), num_actors=1, depth=depth)
    v = sy.render_scene(s, fps=10.0, with_flow=True)
    want = v.object_displacement[0, 0 if expected == "actor" else 1]
    np.testing.assert_allclose(v.flow[0, 16, 16], want, atol=1e-4)


# ------------------------------------------------------------------------------ records


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("synthetic"))
  config = dataclasses.replace(TINY, max_actors=2)
  info = sy.write_dataset(out, config, splits=SPLITS, seed=2, videos_per_shard=2, workers=1)
  return out, config, info


def test_records_parse_and_match_the_rendered_videos(written):
  out, config, _ = written
  files = sy.split_files(out, "train")
  assert [os.path.basename(f) for f in files] == [
    "train-00000-of-00003.tfrecord",
    "train-00001-of-00003.tfrecord",
    "train-00002-of-00003.tfrecord",
  ]
  records = [r for f in files for r in _records(f)]
  assert len(records) == SPLITS["train"]
  for index, record in enumerate(records):
    video = sy.render_video(config, 2, "train", index)
    ex = fmt.parse_example(tf.constant(record), with_annotations=True)
    n, a, o = video.num_frames, video.actor_boxes.shape[1], video.object_boxes.shape[1]
    assert ex["id"].numpy().decode() == video.id
    assert ex["fps"].numpy() == np.float32(video.fps) and int(ex["num_frames"]) == n
    assert int(ex["label"]) == video.label and (int(ex["height"]), int(ex["width"])) == (32, 32)
    frames = np.stack([tf.io.decode_jpeg(f).numpy() for f in ex["frames"]])
    diff = np.abs(frames.astype(int) - video.frames)
    assert diff.mean() < 3 and diff.max() < 60
    np.testing.assert_allclose(
      ex[fmt.REGION_BBOX].to_tensor().numpy().reshape(n, a, 4), video.actor_boxes
    )
    np.testing.assert_array_equal(ex[fmt.REGION_LABEL].to_tensor().numpy(), video.actor_labels)
    np.testing.assert_allclose(
      ex[fmt.OBJECT_BBOX].to_tensor().numpy().reshape(n, o, 4), video.object_boxes
    )
    np.testing.assert_allclose(
      ex[fmt.OBJECT_DISPLACEMENT].to_tensor().numpy().reshape(n, o, 2), video.object_displacement
    )
    context = tf.train.SequenceExample.FromString(record).context.feature
    assert context[fmt.LABEL_TEXT].bytes_list.value[0].decode() == video.label_text


def test_dataset_info_describes_the_data(written):
  out, config, info = written
  with open(os.path.join(out, sy.INFO_FILE)) as f:
    stored = json.load(f)
  assert stored == info
  assert info["classes"] == list(config.classes) and info["seed"] == 2
  assert sy.SyntheticConfig.from_dict(info["config"]) == config
  for split, count in SPLITS.items():
    entry = info["splits"][split]
    assert entry["num_videos"] == count and sum(entry["label_counts"]) == count
    assert sum(entry["fps_histogram"].values()) == count
    assert all(os.path.exists(os.path.join(out, f)) for f in entry["files"])
    assert entry["num_frames"] == sum(
      sy.sample_scene(config, 2, split, i).num_frames() for i in range(count)
    )
  assert set(info["fps_histogram"]) <= {"10-20", "20-30"}
  with pytest.raises(KeyError, match="'test'"):
    sy.split_files(out, "test")


def test_shards_do_not_depend_on_workers_or_shard_size(written, tmp_path):
  out, config, _ = written
  sy.write_dataset(
    str(tmp_path / "a"), config, splits=SPLITS, seed=2, videos_per_shard=2, workers=2
  )
  for split in SPLITS:
    for mine, theirs in zip(
      sy.split_files(out, split), sy.split_files(str(tmp_path / "a"), split), strict=True
    ):
      with open(mine, "rb") as f, open(theirs, "rb") as g:
        assert f.read() == g.read()
  sy.write_dataset(
    str(tmp_path / "b"), config, splits=SPLITS, seed=2, videos_per_shard=3, workers=2
  )
  for split in SPLITS:
    one = [r for f in sy.split_files(out, split) for r in _records(f)]
    other = [r for f in sy.split_files(str(tmp_path / "b"), split) for r in _records(f)]
    assert one == other


def test_ensure_dataset_reuses_and_regenerates(tmp_path):
  out, logs = str(tmp_path), []
  splits = {"train": 3, "val": 1}
  info = sy.ensure_dataset(out, TINY, splits=splits, seed=0, log=logs.append, workers=1)
  shard = sy.split_files(out, "train")[0]
  stamp = os.stat(shard).st_mtime_ns
  again = sy.ensure_dataset(out, TINY, splits=splits, seed=0, log=logs.append, workers=1)
  assert again == info and os.stat(shard).st_mtime_ns == stamp and "reusing" in logs[-1]
  changed = dataclasses.replace(TINY, jpeg_quality=70)
  info = sy.ensure_dataset(out, changed, splits=splits, seed=0, log=logs.append, workers=1)
  assert info["config"]["jpeg_quality"] == 70 and os.stat(shard).st_mtime_ns != stamp
  info = sy.ensure_dataset(out, changed, splits={"train": 2, "val": 1}, seed=0, log=None, workers=1)
  assert info["splits"]["train"]["num_videos"] == 2
  info = sy.ensure_dataset(out, changed, splits={"train": 2, "val": 1}, seed=1, log=None, workers=1)
  assert info["seed"] == 1
  # Missing shards are regenerated too.
  os.remove(sy.split_files(out, "val")[0])
  sy.ensure_dataset(out, changed, splits={"train": 2, "val": 1}, seed=1, log=logs.append, workers=1)
  assert "generating" in logs[-2] and os.path.exists(sy.split_files(out, "val")[0])


def test_stale_shards_are_removed_and_missing_splits_are_reported(tmp_path):
  out = str(tmp_path)
  sy.write_dataset(out, TINY, splits={"train": 4}, videos_per_shard=1, workers=1)
  assert len(sy.split_files(out, "train")) == 4
  sy.write_dataset(out, TINY, splits={"train": 4}, videos_per_shard=2, workers=1)
  assert sorted(os.listdir(out)) == [
    sy.INFO_FILE,
    "train-00000-of-00002.tfrecord",
    "train-00001-of-00002.tfrecord",
  ]
  with pytest.raises(FileNotFoundError, match="'val'"):
    sy.split_files(str(tmp_path / "nothing"), "val")


def test_cli_writes_and_prints_a_summary(tmp_path, capsys):
  out = str(tmp_path / "cli")
  info = sy.main(
    [
      "--out",
      out,
      "--train",
      "2",
      "--val",
      "1",
      "--test",
      "1",
      "--image-size",
      "32",
      "--min-seconds",
      "0.5",
      "--max-seconds",
      "0.5",
      "--workers",
      "1",
      "--seed",
      "4",
      "--max-distractors",
      "1",
      "--motion-block",
      "16",
    ]
  )
  line = capsys.readouterr().out.strip()
  assert line.startswith("wrote train 2, val 1, test 1 videos") and line.endswith(" s")
  assert info["seed"] == 4 and info["config"]["image_size"] == 32
  assert info["motion"]["block"] == 16
  record = _records(sy.split_files(out, "test")[0])[0]
  ex = fmt.parse_example(tf.constant(record), with_motion=True)
  assert int(ex["motion_block"]) == 16 and ex["motion"].shape[1:] == (2, 2, 2)
  assert len(sy.split_files(out, "test")) == 1


# ------------------------------------------------------------------------------ tfds


def test_tfds_builder_builds_offline_and_matches_render_video(tmp_path):
  import tensorflow_datasets as tfds

  from mgvm.datasets.synthetic import builder as synthetic_tfds

  config = synthetic_tfds.make_config("test_tiny", TINY, splits={"train": 3, "val": 1}, seed=6)
  builder = synthetic_tfds.MgvmSynthetic(config=config, data_dir=str(tmp_path))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  assert builder.info.splits["train"].num_examples == 3
  assert builder.info.features["label"].names == list(sy.CLASSES)
  seen = set()
  for ex in tfds.as_numpy(builder.as_dataset(split="train")):
    index = int(ex["id"].decode().rsplit("-", 1)[1])
    video = sy.render_video(TINY, 6, "train", index)
    seen.add(index)
    assert ex["label"] == video.label and ex["fps"] == np.float32(video.fps)
    assert ex["video"].shape == video.frames.shape
    assert np.abs(ex["video"].astype(int) - video.frames).mean() < 3
    np.testing.assert_allclose(ex["actor_boxes"], video.actor_boxes)
    np.testing.assert_allclose(ex["object_displacement"], video.object_displacement)
  assert seen == {0, 1, 2}


def test_motion_block_adds_the_codec_field_and_keeps_the_frames(written, tmp_path):
  """`motion_block`: each record also holds the codec field of its rendered frames (the same
  bytes as `motion_vectors.codec_motion` gives them, whatever the worker count), the JPEG frames
  are the set's without it; a bad block is refused by name."""
  from mgvm.datasets import motion_vectors
  from mgvm.datasets.synthetic import write

  out, config, _ = written
  moving = str(tmp_path / "m")
  info = sy.write_dataset(
    moving, config, splits=SPLITS, seed=2, videos_per_shard=2, workers=2, motion_block=8
  )
  assert info["motion"] == {
    "block": 8,
    "x264": write.MOTION_X264_OPTIONS,
    "x264_cpu_cap": motion_vectors.X264_CPU_CAP,
  }
  plain = [r for f in sy.split_files(out, "train") for r in _records(f)]
  records = [r for f in sy.split_files(moving, "train") for r in _records(f)]
  for index, (record, without) in enumerate(zip(records, plain, strict=True)):
    ex = fmt.parse_example(tf.constant(record), with_motion=True)
    assert (
      ex["frames"].numpy().tolist()
      == fmt.parse_example(tf.constant(without))["frames"].numpy().tolist()
    )
    video = sy.render_video(config, 2, "train", index)
    field = motion_vectors.codec_motion(video.frames, block=8, options=write.MOTION_X264_OPTIONS)
    vectors = ex["motion"].numpy().reshape(field.vectors.shape)
    np.testing.assert_array_equal(vectors, field.vectors)
    np.testing.assert_array_equal(
      ex["motion_valid"].numpy().reshape(field.valid.shape), field.valid
    )
    assert int(ex["motion_block"]) == 8
  with pytest.raises(ValueError, match="motion_block must be an int >= 0"):
    sy.write_dataset(str(tmp_path / "bad"), config, splits=SPLITS, motion_block=-8)


def test_processes_asking_for_one_set_at_once_take_turns(tmp_path):
  """Two callers of `ensure_dataset` on one directory at once (threads here: an OS file lock
  works between open files as between processes): one writes, the other reuses its set."""
  import threading

  out, logs, results = str(tmp_path / "set"), [], []

  def ask():
    results.append(
      sy.ensure_dataset(out, TINY, splits={"train": 3}, seed=0, log=logs.append, workers=1)
    )

  threads = [threading.Thread(target=ask) for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert len(results) == 2 and results[0] == results[1]
  assert sum("generating" in m for m in logs) == 1 and sum("reusing" in m for m in logs) == 1
  assert os.path.exists(out + ".lock")
