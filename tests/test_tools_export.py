"""`mgvm.export` and loading into another clip: Hugging Face directories that `transformers` loads
with equal outputs, the official `.pth` and StableHLO / ONNX round trips, the HF
`use_mean_pooling=True` pre-training variant (`encoder_norm=False`), and a 16-frame 224-px
checkpoint loaded as 32 frames at 160 px (fixed positions rebuilt, a learned table interpolated
as torch's trilinear `interpolate`). Tiny widths, random weights, float32."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from mgvm import masking, models  # noqa: E402
from mgvm.export import main as export_main  # noqa: E402
from mgvm.export import params_difference  # noqa: E402
from mgvm.weights import resize  # noqa: E402
from mgvm.weights.checkpoints import load_model  # noqa: E402
from mgvm.weights.hf_export import save_hf  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

T, S = 4, 32  # 2 x 2 x 2 tokens
SMALL = dict(dim=32, depth=1, num_heads=2, num_frames=T, image_size=S)


def randomize(model, seed=0):
  """Every parameter set to noise (LayerNorm scales near 1), so a misplaced tensor cannot pass."""
  rng = np.random.default_rng(seed)
  for path, var in nnx.iter_graph(model):
    if isinstance(var, nnx.Param):
      shape = var.get_value().shape
      noise = rng.standard_normal(shape).astype(np.float32)
      var.set_value(jax.numpy.asarray(1.0 + 0.1 * noise if path[-1] == "scale" else 0.2 * noise))
  return model


def clip(batch=2, seed=1, frames=T, size=S):
  return np.asarray(jax.random.normal(jax.random.key(seed), (batch, frames, size, size, 3)))


def to_torch(video):
  return torch.from_numpy(np.ascontiguousarray(video.transpose(0, 1, 4, 2, 3)))  # B T C H W


def reference_eps(hf):
  """`hf` with the reference's LayerNorm eps 1e-6 in `fc_norm` / `decoder.norm`, which
  transformers builds with the default 1e-5 whatever config.layer_norm_eps says."""
  for norm in (getattr(hf, "fc_norm", None), getattr(getattr(hf, "decoder", None), "norm", None)):
    if norm is not None:
      norm.eps = 1e-6
  return hf


def assert_hf_equal(hf, run, ours, what):
  """`run(hf)` equals `ours` within 1e-5 once the eps quirk is aligned; as shipped within 1e-4."""
  with torch.no_grad():
    shipped = np.abs(run(hf) - ours).max()
    aligned = np.abs(run(reference_eps(hf)) - ours).max()
  print(f"{what}: max |diff| {aligned:.1e} (HF as shipped, eps 1e-5 norms: {shipped:.1e})")
  assert aligned <= 1e-5
  assert shipped <= 1e-4


def test_hf_classifier_directory_loads_in_transformers_with_equal_logits(tmp_path):
  clf = randomize(models.VideoClassifier(None, num_classes=3, **SMALL, rngs=nnx.Rngs(0)))
  save_hf(clf, str(tmp_path), class_names=("a", "b", "c"))
  hf = transformers.VideoMAEForVideoClassification.from_pretrained(tmp_path).eval()
  assert hf.config.id2label == {0: "a", 1: "b", 2: "c"} and hf.config.use_mean_pooling
  video = clip()
  ours = np.asarray(clf(video)[0])
  assert abs(ours).max() > 1.0  # a real signal, not tiny logits
  assert_hf_equal(hf, lambda m: m(to_torch(video)).logits.numpy(), ours, "HF classifier logits")


@pytest.mark.parametrize("encoder_norm", [True, False])
def test_hf_pretraining_directory_round_trip(tmp_path, encoder_norm):
  """VideoMAEForPreTraining loads the export (use_mean_pooling = not encoder_norm) and predicts
  the same pixels; HF's default pre-training model (no final encoder norm) imports back equal."""
  mae = randomize(
    models.VideoMAE(
      None, decoder_dim=16, decoder_depth=1, decoder_heads=2, encoder_norm=encoder_norm,
      **SMALL, rngs=nnx.Rngs(0),
    )
  )  # fmt: skip
  save_hf(mae, str(tmp_path))
  hf = transformers.VideoMAEForPreTraining.from_pretrained(tmp_path).eval()
  assert hf.config.use_mean_pooling is (not encoder_norm)
  assert (hf.videomae.layernorm is None) is (not encoder_norm)
  video = clip()
  mask = np.zeros((2, 8), bool)
  mask[0, [0, 3, 5, 6]] = mask[1, [1, 2, 4, 7]] = True
  ours = np.asarray(mae(video, masking.from_boolean_mask(mask))[0])
  assert abs(ours).max() > 0.5
  assert_hf_equal(
    hf,
    lambda m: m(to_torch(video), bool_masked_pos=torch.from_numpy(mask)).logits.numpy(),
    ours,
    f"HF pre-training predictions (encoder_norm={encoder_norm})",
  )
  back = load_model(str(tmp_path), log=None).model
  assert back.encoder.norm is None if not encoder_norm else back.encoder.norm is not None
  assert params_difference(back, mae) == 0.0


def test_trilinear_resize_matches_torch():
  table = np.random.default_rng(0).standard_normal((8 * 14 * 14, 5)).astype(np.float32)
  ours = resize.resize_table(table, (8, 14, 14), (16, 10, 10))
  grid = torch.from_numpy(table.reshape(8, 14, 14, 5)).permute(3, 0, 1, 2)[None]
  theirs = torch.nn.functional.interpolate(
    grid, size=(16, 10, 10), mode="trilinear", align_corners=False
  )
  theirs = theirs[0].permute(1, 2, 3, 0).reshape(-1, 5).numpy()
  np.testing.assert_allclose(ours, theirs, atol=1e-6)
  np.testing.assert_array_equal(resize.resize_table(table, (8, 14, 14), (8, 14, 14)), table)
  with pytest.raises(ValueError, match="1568 rows"):
    resize.resize_table(table[:-1], (8, 14, 14), (16, 10, 10))


def write_workdir(path, model_config, model):
  """An mgvm workdir holding `model`'s params as step 1 and its recorded config."""
  from mgvm import workdir
  from mgvm.train import checkpoint

  os.makedirs(path, exist_ok=True)
  workdir.record_config(str(path), model_config, resuming=False, log=None)
  params = nnx.state(model, nnx.Param)
  with checkpoint.Checkpointer(
    workdir.checkpoint_dir(str(path)), save_every_steps=1, async_save=False
  ) as c:
    c.maybe_save(1, {"params": params}, params, force=True)


def finetune_config(**model):
  from configs import finetune

  c = finetune.get_config("runlocal")
  c.model.update(size="", dim=32, depth=1, num_heads=2, dtype="float32", **model)
  c.num_frames, c.image_size = 16, 224
  return c


def test_16_frames_at_224_load_as_32_frames_at_160(tmp_path):
  """Fixed positions: the HF checkpoint's weights in a model built for the new clip, outputs equal
  to that model's; learned: the table interpolated (torch's trilinear), logged either way."""
  clf = randomize(
    models.VideoClassifier(None, dim=32, depth=1, num_heads=2, num_classes=3, rngs=nnx.Rngs(0))
  )
  save_hf(clf, str(tmp_path / "hf"))
  lines = []
  loaded = load_model(str(tmp_path / "hf"), num_frames=32, image_size=160, log=lines.append)
  assert loaded.grid == (16, 10, 10) and loaded.num_frames == 32 and loaded.image_size == (160, 160)
  assert any("(8, 14, 14) of the checkpoint -> (16, 10, 10)" in x and "rebuilt" in x for x in lines)
  direct = models.VideoClassifier(
    None, dim=32, depth=1, num_heads=2, num_classes=3, num_frames=32, image_size=160,
    rngs=nnx.Rngs(1),
  )  # fmt: skip
  nnx.update(direct, nnx.state(clf, nnx.Param))
  video = clip(batch=1, frames=32, size=160)
  assert params_difference(loaded.model, direct) == 0.0
  np.testing.assert_allclose(np.asarray(loaded.model(video)[0]), direct(video)[0], atol=1e-5)

  config = finetune_config(pos_embed="learned")
  learned = randomize(
    models.VideoClassifier(
      None, dim=32, depth=1, num_heads=2, num_classes=3, pos_embed="learned", rngs=nnx.Rngs(0)
    )
  )
  write_workdir(tmp_path / "run", config, learned)
  lines = []
  loaded = load_model(str(tmp_path / "run"), num_frames=32, image_size=160, log=lines.append)
  assert any("learned pos_embed interpolated trilinearly" in x for x in lines), lines
  table = np.array(learned.encoder.pos_embed[...]).reshape(8, 14, 14, 32)
  expected = (
    torch.nn.functional.interpolate(
      torch.from_numpy(table).permute(3, 0, 1, 2)[None], size=(16, 10, 10), mode="trilinear"
    )[0]
    .permute(1, 2, 3, 0)
    .reshape(-1, 32)
  )
  np.testing.assert_allclose(np.asarray(loaded.model.encoder.pos_embed[...]), expected, atol=1e-6)
  assert loaded.class_names[:2] == ("still", "move_left")  # the run's synthetic classes


def test_export_cli_official_and_stablehlo_round_trips(tmp_path, capsys):
  clf = randomize(models.VideoClassifier(None, num_classes=3, **SMALL, rngs=nnx.Rngs(0)))
  save_hf(clf, str(tmp_path / "hf"))
  result = export_main(
    ["--checkpoint", str(tmp_path / "hf"), "--format", "official", "--out", str(tmp_path / "m.pth")]
  )
  assert result["check"] == 0.0
  from mgvm.weights import load_torch_checkpoint

  back = load_torch_checkpoint(str(tmp_path / "m.pth"), kind="classifier", num_heads=2,
                               num_frames=T, image_size=S)  # fmt: skip
  video = clip(batch=3)
  np.testing.assert_array_equal(np.asarray(back(video)[0]), np.asarray(clf(video)[0]))

  out = tmp_path / "shlo"
  # from the .pth, which records neither its clip nor (width 32) its heads
  result = export_main(["--checkpoint", str(tmp_path / "m.pth"), "--format", "stablehlo", "--out", str(out), "--platforms", "cpu", "--num-heads", "2", "--num-frames", str(T), "--image-size", str(S)])  # fmt: skip
  assert result["check"] <= 1e-6
  from mgvm.weights import serialize

  exported = serialize.load_stablehlo(str(out))
  np.testing.assert_allclose(
    np.asarray(exported.call(video)), np.asarray(clf(video)[0]), atol=1e-5
  )  # a batch of 3: the export's batch is symbolic
  import json

  signature = json.loads((out / "signature.json").read_text())
  assert signature["input"]["shape"] == ["B (any)", T, S, S, 3]
  assert signature["output"] == {"name": "logits", "shape": ["B (any)", 3], "dtype": "float32"}
  assert "wrote stablehlo export" in capsys.readouterr().out


def test_export_errors_name_the_problem(tmp_path, capsys):
  learned = models.VideoClassifier(
    None, num_classes=3, pos_embed="learned", **SMALL, rngs=nnx.Rngs(0)
  )
  with pytest.raises(ValueError, match="learned pos_embed"):
    save_hf(learned, str(tmp_path / "x"))
  clf = models.VideoClassifier(None, num_classes=3, **SMALL, rngs=nnx.Rngs(0))
  save_hf(clf, str(tmp_path / "hf"))
  (tmp_path / "labels.txt").write_text("a\nb\n")
  cases = [
    (["--format", "official", "--out", str(tmp_path / "dir")], "is not one"),
    (["--format", "hf", "--out", str(tmp_path / "o"), "--labels", str(tmp_path / "labels.txt")],
     "2 class names, but the checkpoint's head has 3"),
  ]  # fmt: skip
  for args, message in cases:
    with pytest.raises(SystemExit) as exit_info:
      export_main(["--checkpoint", str(tmp_path / "hf"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
  with pytest.raises(SystemExit):
    export_main(["--checkpoint", str(tmp_path / "nothing"), "--format", "hf", "--out", "x"])
  assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime(tmp_path):
  pytest.importorskip("jax2onnx")
  pytest.importorskip("onnxruntime")
  clf = randomize(models.VideoClassifier(None, num_classes=3, **SMALL, rngs=nnx.Rngs(0)))
  save_hf(clf, str(tmp_path / "hf"))
  result = export_main(["--checkpoint", str(tmp_path / "hf"), "--format", "onnx", "--out", str(tmp_path / "onnx")])  # fmt: skip
  assert result["check"] <= 1e-5


def test_init_from_a_run_at_another_clip_interpolates_its_learned_table(tmp_path, capsys):
  from mgvm import tasks
  from mgvm.tasks import common

  config = finetune_config(pos_embed="learned")
  config.num_frames, config.image_size = 4, 32  # grid (2, 2, 2)
  run = models.VideoClassifier(None, pos_embed="learned", num_classes=3, **SMALL, rngs=nnx.Rngs(0))
  write_workdir(tmp_path / "run", config, run)
  config.num_frames, config.image_size = 8, 48  # grid (4, 3, 3)
  model = nnx.eval_shape(lambda: tasks.get("finetune").build_model(config, num_classes=3))
  params = common.init_from_params(config, str(tmp_path / "run"), model)
  expected = resize.resize_table(np.asarray(run.encoder.pos_embed[...]), (2, 2, 2), (4, 3, 3))
  np.testing.assert_array_equal(params["encoder"]["pos_embed"], expected)
  assert "(2, 2, 2) of the init_from run -> (4, 3, 3)" in capsys.readouterr().out
