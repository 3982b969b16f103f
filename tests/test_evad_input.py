"""EVAD's AVA input path and evaluation: aspect-keeping padded clips, flip within the content,
position-table interpolation (torch parity), the normalisation choice, and the AVA protocol
options (scored classes, excluded keyframes, frame order)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from flax import nnx

from mgvm.data import detection, device_ops, video_ops
from mgvm.data import format as fmt
from mgvm.evaluate import detection as detection_eval
from mgvm.models import vit

# ------------------------------------------------------------------- position interpolation


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(18, 32), (4, 4), (7, 20), (14, 14), (1, 3)])
def test_bicubic_resize_equals_torch(size, align_corners):
  """float64: the same formula to rounding. float32 random data: torch's own float32 result is
  ~2e-6 from its float64 one (its accumulation), so float32 parity is checked to 5e-6 here and
  to 1e-6 on the position table below."""
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).normal(size=(2, 3, 14, 14))
  for dtype, tol in ((np.float64, 1e-12), (np.float32, 5e-6)):
    want = torch.nn.functional.interpolate(
      torch.from_numpy(x.astype(dtype)), size=size, mode="bicubic", align_corners=align_corners
    ).numpy()
    got = vit.resize_bicubic(x.astype(dtype), size, align_corners=align_corners)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=tol, rtol=0)


def test_position_table_is_evads_per_slice_interpolation():
  """The reference reshapes the (T'·14·14, D) table to (T', D, 14, 14), bicubic (align_corners
  False) to (h, w), back to (T'·h·w, D); done here in torch on the same float32 table."""
  torch = pytest.importorskip("torch")
  t, dim, (h, w) = 2, 16, (18, 32)
  base = torch.from_numpy(vit.sinusoid_table(t * 14 * 14, dim))
  slices = base.reshape(t, 14, 14, dim).permute(0, 3, 1, 2)
  want = torch.nn.functional.interpolate(slices, size=(h, w), mode="bicubic", align_corners=False)
  want = want.permute(0, 2, 3, 1).reshape(-1, dim).numpy()
  got = vit.position_table((t, h, w), dim, (14, 14))
  assert got.dtype == np.float32 and got.shape == (t * h * w, dim)
  np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
  # () and a grid equal to pos_grid are the plain 1-D table (the reference skips the resize)
  np.testing.assert_array_equal(
    vit.position_table((t, h, w), dim), vit.sinusoid_table(t * h * w, dim)
  )
  np.testing.assert_array_equal(
    vit.position_table((t, 14, 14), dim, (14, 14)), vit.sinusoid_table(t * 196, dim)
  )
  with pytest.raises(ValueError, match="pos_grid must be"):
    vit.position_table((t, h, w), dim, (14,))


def test_encoder_adds_the_interpolated_table_and_refuses_other_counts():
  encoder = vit.VideoViT(
    None,
    dim=8,
    depth=0,
    num_heads=2,
    num_frames=4,
    image_size=(32, 64),
    pos_grid=(3, 3),
    final_norm=False,
    rngs=nnx.Rngs(0),
  )
  assert encoder.grid == (2, 2, 4)
  tokens = jnp.asarray(np.random.default_rng(1).normal(size=(1, 16, 8)), jnp.float32)
  got = np.asarray(encoder.encode(tokens)) - np.asarray(tokens)
  np.testing.assert_allclose(got[0], vit.position_table((2, 2, 4), 8, (3, 3)), atol=1e-6)
  with pytest.raises(ValueError, match="pos_grid"):
    encoder.encode(tokens[:, :8])


def test_evad_interpolates_the_encoder_and_decoder_tables(monkeypatch):
  """Traced only: the encoder's and the context refinement decoder's tables are both the
  pos_grid interpolation for the model's grid (EVAD interpolates both)."""
  from mgvm.models import evad as evad_lib

  calls = []
  real = evad_lib.position_table

  def spy(grid, dim, pos_grid=()):
    calls.append((tuple(grid), dim, tuple(pos_grid)))
    return real(grid, dim, pos_grid)

  monkeypatch.setattr(evad_lib, "position_table", spy)
  model = nnx.eval_shape(
    lambda: evad_lib.EVAD(
      None,
      num_classes=3,
      dim=32,
      depth=4,
      num_heads=2,
      num_frames=4,
      image_size=(32, 64),
      decoder_dim=16,
      decoder_depth=1,
      decoder_heads=2,
      action_hidden=8,
      pos_grid=(3, 3),
      localizer=dict(dim=16, num_proposals=4, num_stages=1, num_heads=2, dynamic_dim=4, ffn_dim=8),
      rngs=nnx.Rngs(0),
    )
  )
  assert model.encoder.pos_grid == (3, 3)
  np.testing.assert_array_equal(
    model.encoder.positions(16), vit.position_table((2, 2, 4), 32, (3, 3))
  )
  calls.clear()
  graphdef, state = nnx.split(model)
  video = jax.ShapeDtypeStruct((2, 4, 32, 64, 3), jnp.float32)
  hw = jax.ShapeDtypeStruct((2, 2), jnp.int32)  # per-clip content sizes are accepted
  out = jax.eval_shape(lambda st, v, s: nnx.merge(graphdef, st)(v, s)[0], state, video, hw)
  assert out["actions"].shape == (1, 2, 4, 3) and out["boxes"].shape == (1, 2, 4, 4)
  assert calls == [((2, 2, 4), 16, (3, 3))]  # the decoder's: its width, the same grid


# ------------------------------------------------------------------------- normalisation


def test_kinetics_table_and_unknown_names():
  values = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16, 1).repeat(3, -1)
  got = np.asarray(device_ops.normalize(values, "kinetics"))
  want = (values.astype(np.float32) / np.float32(255) - np.float32(0.45)) / np.float32(0.225)
  np.testing.assert_array_equal(got, want)
  # the TF host op and the float path agree with the table
  np.testing.assert_array_equal(video_ops.normalize(values, "kinetics").numpy(), got)
  np.testing.assert_allclose(
    np.asarray(device_ops.normalize(values.astype(np.float32), "kinetics")), got, atol=1e-6
  )
  with pytest.raises(
    ValueError, match=r"config\.data\.normalization='coco'.*'imagenet', 'kinetics'"
  ):
    device_ops.model_video({"video": values}, normalization="coco")


def test_pretraining_targets_do_not_depend_on_the_normalisation():
  from mgvm.evaluate import reconstruction
  from mgvm.train import losses

  clip = np.random.default_rng(2).integers(0, 256, (2, 2, 16, 16, 3), dtype=np.uint8)
  targets, raws = {}, {}
  for name in device_ops.NORMALIZATIONS:
    video = device_ops.model_video({"video": clip}, normalization=name)
    mean, std = device_ops.normalization_stats(name)
    targets[name] = np.asarray(losses.pixel_targets(video, (2, 8, 8), mean=mean, std=std))
    raws[name] = np.asarray(
      losses.pixel_targets(video, (2, 8, 8), normalize=False, mean=mean, std=std)
    )
  np.testing.assert_allclose(targets["kinetics"], targets["imagenet"], atol=2e-5)
  np.testing.assert_allclose(raws["kinetics"], raws["imagenet"], atol=1e-6)
  assert (
    np.abs(raws["imagenet"] - losses.patchify(clip / 255.0, (2, 8, 8)).reshape(2, 4, -1)).max()
    < 1e-6
  )
  # and the reconstruction metrics undo the statistics they are given
  video = device_ops.model_video({"video": clip}, normalization="kinetics")
  m = type("M", (), {"ids_target": jnp.asarray([[0, 3], [1, 2]])})()
  pred = jnp.zeros((2, 2, 2 * 8 * 8 * 3))
  _, truth = reconstruction.reconstruct_pixels(video, pred, m, (2, 8, 8), normalization="kinetics")
  want = np.take_along_axis(raws["imagenet"], np.asarray(m.ids_target)[..., None], 1)
  np.testing.assert_allclose(np.asarray(truth), want, atol=1e-6)


# ------------------------------------------------------------- aspect-keeping padded clips


@pytest.mark.parametrize(
  "frame, canvas, want",
  [
    ((1080, 1920), (288, 512), (288, 512)),  # 16:9 fills AVA's canvas
    ((480, 640), (288, 512), (288, 384)),  # 4:3: short side 288, padded right
    ((720, 1680), (288, 512), (219, 512)),  # wider than 16:9: long side capped at 512
    ((640, 480), (288, 512), (288, 216)),  # portrait: fitted in the landscape canvas
    ((48, 96), 64, (32, 64)),  # square canvas
  ],
)
def test_fit_size_by_hand(frame, canvas, want):
  assert video_ops.fit_size(*frame, canvas).numpy().tolist() == list(want)


@pytest.mark.parametrize("canvas", [(8, 32), (12, 16)])  # padded right / at the bottom
def test_resize_keep_aspect_pads_bottom_right_with_zeros(canvas):
  frames = tf.random.stateless_uniform([2, 8, 16, 3], [1, 2], 1.0, 255.0)
  out, content = video_ops.resize_keep_aspect(frames, canvas)
  assert content.numpy().tolist() == [8, 16] and out.shape == (2, *canvas, 3)
  np.testing.assert_allclose(out[:, :8, :16].numpy(), frames.numpy(), atol=1e-4)
  assert not out[:, 8:].numpy().any() and not out[:, :, 16:].numpy().any()
  out, content = video_ops.resize_keep_aspect(frames, (4, 16))  # shrunk: 4 x 8, then padded
  np.testing.assert_array_equal(out[:, :, :8].numpy(), video_ops.resize(frames, (4, 8)).numpy())
  assert content.numpy().tolist() == [4, 8] and not out[:, :, 8:].numpy().any()


def test_flip_mirrors_the_content_only():
  video = np.arange(2 * 1 * 2 * 6 * 1).reshape(2, 1, 2, 6, 1)
  got = np.asarray(device_ops.flip(video, [True, False], widths=[4, 6]))
  np.testing.assert_array_equal(got[0, 0, 0, :, 0], [3, 2, 1, 0, 4, 5])
  np.testing.assert_array_equal(got[1], video[1])
  np.testing.assert_array_equal(  # the full width is the plain mirror
    np.asarray(device_ops.flip(video, [True, True], widths=[6, 6])),
    np.asarray(device_ops.flip(video, [True, True])),
  )


def _record(path, *, height, width, box, fps=10.0, num_frames=12, video_id="vid"):
  """One video: white inside the normalised `box` on every frame, black elsewhere; the box
  annotated (label 1) on frames 4 and 8."""
  from mgvm.datasets.synthetic import encode_jpeg

  frame = np.zeros((height, width, 3), np.uint8)
  x1, y1, x2, y2 = box
  frame[round(y1 * height) : round(y2 * height), round(x1 * width) : round(x2 * width)] = 255
  jpegs = encode_jpeg(np.repeat(frame[None], num_frames, 0))
  boxes = [np.zeros(0, np.float32)] * num_frames
  labels = [np.zeros(0, np.int64)] * num_frames
  for k in (4, 8):
    boxes[k], labels[k] = np.asarray(box, np.float32), np.asarray([1])
  record = fmt.encode_example(
    video_id=video_id,
    fps=fps,
    jpeg_frames=list(jpegs),
    height=height,
    width=width,
    annotations={fmt.REGION_BBOX: boxes, fmt.REGION_LABEL: labels},
  )
  with tf.io.TFRecordWriter(path) as w:
    w.write(record)
  return path


@pytest.fixture(scope="module")
def wide_record(tmp_path_factory):
  """32 x 64 frames (2:1) whose box is the left-middle block; the canvas below is 32 x 96."""
  path = str(tmp_path_factory.mktemp("aspect") / "v.tfrecord")
  return _record(path, height=32, width=64, box=(0.125, 0.25, 0.375, 0.75))


KW = dict(num_frames=4, image_size=(32, 96), num_classes=2, max_boxes=2, frame_stride=1)


def test_short_side_clips_flip_about_the_content_width(wide_record):
  batch = next(
    detection.make_detection_dataset(
      [wide_record], mode="train", batch_size=4, resize="short_side", flip=True, seed=4, **KW
    ).as_numpy_iterator()
  )
  assert batch["flip"].tolist() == [True, True, False, False]  # this seed flips some clips
  assert batch["image_hw"].tolist() == [[32, 64]] * 4
  video = np.asarray(device_ops.model_video(batch))  # flipped and normalised on the device
  assert not video[..., 64:, :].any()  # the padding is 0 after normalisation
  for i in range(4):
    box = batch["boxes"][i, 0]
    want = [40, 8, 56, 24] if batch["flip"][i] else [8, 8, 24, 24]  # mirrored about 64, not 96
    np.testing.assert_allclose(box, want, atol=1e-4)
    x1, y1, x2, y2 = (int(v) for v in box)
    inside = np.zeros((32, 64), bool)
    inside[y1:y2, x1:x2] = True
    content = video[i, :, :, :64]  # [T, 32, 64, 3]
    assert content[:, inside].mean() > 1.5 and content[:, ~inside].mean() < -1.5  # box on white
  square = next(
    detection.make_detection_dataset(
      [wide_record], mode="train", batch_size=2, seed=3, **KW
    ).as_numpy_iterator()
  )
  assert "image_hw" not in square  # "square" batches are as before
  np.testing.assert_allclose(square["boxes"][0, 0], [12, 8, 36, 24], atol=1e-4)  # stretched


def test_short_side_eval_clips_carry_content_id_and_rate(wide_record):
  batches = list(
    detection.make_detection_dataset(
      [wide_record], mode="eval", batch_size=4, resize="short_side", keyframes_per_video=0, **KW
    ).as_numpy_iterator()
  )
  b = batches[0]
  assert b["keyframe"][:2].tolist() == [4, 8] and b["mask"].tolist() == [True, True, False, False]
  assert b["image_hw"][:2].tolist() == [[32, 64]] * 2 and b["image_hw"][2:].tolist() == [[0, 0]] * 2
  assert b["video_id"][:2].tolist() == [b"vid", b"vid"] and b["fps"][0] == 10.0
  np.testing.assert_allclose(b["boxes"][0, 0], [8, 8, 24, 24], atol=1e-4)
  with pytest.raises(ValueError, match=r"config\.data\.resize='crop'.*'square', 'short_side'"):
    detection.make_detection_dataset([wide_record], mode="eval", batch_size=4, resize="crop", **KW)


# ------------------------------------------------------------------------ AVA evaluation


def test_detections_and_ground_truth_are_divided_by_the_content_size():
  """A detection equal to its ground truth in pixels of the 32 x 64 content (canvas 32 x 96)
  scores AP 1; the normalised boxes are the original frame's."""
  batch = {
    "video": np.zeros((2, 1, 32, 96, 3), np.uint8),
    "image_hw": np.asarray([[32, 64], [0, 0]]),  # the second row is eval padding
    "mask": np.asarray([True, False]),
    "video_index": np.asarray([0, 0]),
    "keyframe": np.asarray([4, 0]),
    "boxes": np.asarray([[[8, 8, 24, 24]], [[0, 0, 0, 0]]], np.float32),
    "box_valid": np.asarray([[True], [False]]),
    "actions": np.asarray([[[0, 1]], [[0, 0]]], np.float32),
  }
  assert detection_eval.content_hw(batch, (32, 96)).tolist() == [[32, 64], [32, 96]]
  person = np.asarray([[0.9, 0.1], [0.9, 0.1]])
  boxes = np.asarray([[[8, 8, 24, 24], [0, 0, 90, 30]]] * 2, np.float32)
  actions = np.asarray([[[0.1, 0.8], [0.2, 0.3]]] * 2)
  dets, gts = detection_eval.batch_detections(batch, person, boxes, actions, (32, 96), 0.7)
  assert gts == [((0, 0, 4), (0.125, 0.25, 0.375, 0.75), 1)]
  assert [d[1] for d in dets] == [(0.125, 0.25, 0.375, 0.75)] * 2  # one proposal kept, 2 classes
  assert detection_eval.score(dets, gts, num_classes=2)["frame_map"] == 1.0


def test_label_map_classes_and_excluded_timestamps_change_the_map_as_by_hand(tmp_path):
  """Frames A (keyframe 20 of 'vid' at 10 fps, offset 900 s: second 902) and B (keyframe 30,
  second 903). Trained classes 0..3; the label map lists 1 and 3; A is excluded.

  class 1: dets 0.95 FP (B), 0.9 TP (A), 0.8 TP (B), 2 GT -> AP = 2/3 (envelope 2/3 on both
    recall steps); without A: 0.95 FP, 0.8 TP, 1 GT -> AP 1/2.
  class 2: one TP -> AP 1.    class 3: 0.7 FP, 0.6 TP, 1 GT -> AP 1/2.
  All classes: (2/3 + 1 + 1/2) / 3; classes 1, 3: (2/3 + 1/2) / 2; and A excluded: 1/2.
  """
  import ml_collections

  from mgvm.tasks import detect

  g1, g2, g3 = (0, 0, 10, 10), (20, 20, 30, 30), (40, 40, 50, 50)
  batch = {
    "video": np.zeros((2, 1, 64, 64, 3), np.uint8),
    "mask": np.asarray([True, True]),
    "video_index": np.asarray([0, 0]),
    "keyframe": np.asarray([20, 30]),
    "video_id": np.asarray([b"vid", b"vid"], object),
    "fps": np.asarray([10.0, 10.0], np.float32),
    "boxes": np.asarray([[g1, g1, g1], [g2, g2, g3]], np.float32),
    "box_valid": np.asarray([[True, False, False], [True, True, True]]),
    "actions": np.asarray(
      [[[0, 1, 0, 0], [0] * 4, [0] * 4], [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]], np.float32
    ),
  }
  # kept proposals: A: g1 (the second is below the person threshold); B: g2 and g3. Action
  # scores per class 0..3; the zero scores rank last, after every true positive (no AP change).
  person = np.asarray([[1.0, 0.0], [1.0, 1.0]])
  boxes = np.asarray([[g1, g1], [g2, g3]], np.float32)
  actions = np.asarray(
    [[[0, 0.9, 0, 0], [0, 0, 0, 0]], [[0, 0.8, 0.5, 0.7], [0, 0.95, 0, 0.6]]], np.float32
  )
  dets, gts = detection_eval.batch_detections(batch, person, boxes, actions, (64, 64), 0.5)
  assert len(dets) == 3 * 4 and len(gts) == 4

  (tmp_path / "map.pbtxt").write_text(
    'item {\n  name: "bend"\n  id: 1\n}\nitem {\n  name: "dance"\n  id: 3\n}\n'
  )
  (tmp_path / "excluded.csv").write_text("vid,0902\nother,0903\n")
  (tmp_path / "val.summary.json").write_text(json.dumps({"boxes_offset": 900}))
  config = ml_collections.ConfigDict(
    dict(eval=dict(class_ids=(), label_map="", excluded_timestamps="", frame_order="input"))
  )
  source = type("Source", (), {"root": str(tmp_path)})()

  def mean_ap():
    ids = detect.eval_class_ids(config, 4)
    excluded, offset = detect.eval_excluded(config, source, "val")
    skip = detection_eval.excluded_keys(batch, excluded, offset)
    return detection_eval.score(
      dets, gts, num_classes=4, class_ids=ids, excluded=skip, frame_order="input"
    )

  every = mean_ap()
  assert every["frame_map"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3, abs=1e-12)
  assert every["per_class_ap"][0] is None and every["classes_scored"] == 4
  config.eval.label_map = str(tmp_path / "map.pbtxt")
  listed = mean_ap()
  assert listed["frame_map"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-12)
  assert sorted(listed["per_class_ap"]) == [1, 3] and listed["num_gt"] == 3
  config.eval.excluded_timestamps = str(tmp_path / "excluded.csv")
  cut = mean_ap()
  assert cut["frame_map"] == pytest.approx(0.5, abs=1e-12) and cut["excluded_keyframes"] == 1
  assert cut["num_gt"] == 2
  # a class list and a label map together, or ids the model does not have, fail naming the key
  config.eval.class_ids = (1, 3)
  with pytest.raises(ValueError, match="class_ids or config.eval.label_map, not both"):
    detect.eval_class_ids(config, 4)
  config.eval.label_map = ""
  with pytest.raises(ValueError, match=r"config\.eval\.class_ids=\(1, 3\): class ids \[3\]"):
    detect.eval_class_ids(config, 3)
  # AVA's 1-based ids with data.label_offset=1: id k is class k - 1, id 4 fits 4 classes
  config.data = ml_collections.ConfigDict(dict(label_offset=1))
  config.eval.class_ids = (1, 4)
  assert detect.eval_class_ids(config, 4) == [0, 3]
  with pytest.raises(ValueError, match=r"class ids \[0\] are outside .* \[1, 5\)"):
    config.eval.class_ids = (0, 1)
    detect.eval_class_ids(config, 4)


def test_keyframe_seconds_inverts_prepares_rounding():
  for fps in (10.0, 25.0, 29.97, 30.0):
    for t in range(902, 910):
      k = int(np.floor((t - 900) * fps + 0.5))  # mgvm.datasets.prepare.frame_annotations
      assert detection_eval.keyframe_seconds(k, np.float32(fps), 900.0) == t


def test_detect_config_keeps_todays_defaults_and_takes_a_pair():
  from configs import detect
  from mgvm.config import load_config

  c = detect.get_config("runlocal")
  assert (c.image_size, c.data.resize, c.data.normalization, c.model.pos_grid) == (
    64,
    "square",
    "imagenet",
    (),
  )
  assert (c.eval.class_ids, c.eval.label_map, c.eval.frame_order) == ((), "", "score")
  c = load_config("configs/detect.py:runlocal", ["--config.image_size=(32,64)"])
  assert c.image_size == (32, 64)
