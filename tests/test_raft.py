"""mgvm.flow.raft: every iteration's flow against torchvision's RAFT (random weights, eval mode),
the torchvision / princeton-vl converters, the converted file, the flow function (ImageNet
frames, any size, batch independence, sharding) and RAFT as MGMAE's flow."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgvm.flow import raft
from mgvm.flow import raft_weights as rw
from mgvm.sharding import make_mesh

torch = pytest.importorskip("torch")
SMALL_SIZE, SMALL_ITERS = (128, 160), 12
LARGE_SIZE, LARGE_ITERS = (128, 128), 3


def _pairs(size, shifts):
  """(a, b) float32 [len(shifts), H, W, 3] in [−1, 1]: textures and the same moved by a shift."""
  h, w = size
  a = np.stack([rw._texture(h, w, seed=i) for i in range(len(shifts))])
  b = np.stack([rw._texture(h, w, s, seed=i) for i, s in enumerate(shifts)])
  return 2 * a - 1, 2 * b - 1


def _torchvision(variant: str, seed: int):
  """torchvision's `variant(weights=None)` seeded, eval mode, batch-norm statistics and affine
  terms randomised (at init they are 0 / 1 and would not matter), and its numpy state dict;
  a skip where torchvision is not installed (requirements-test.txt pins it)."""
  try:
    rw.import_torchvision()
  except ImportError as e:
    pytest.skip(f"needs torchvision (requirements-test.txt): {e}")
  torch.manual_seed(seed)
  model = rw.torchvision_model(variant)
  g = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for name, v in model.state_dict().items():
      if name.endswith(("running_mean", ".1.bias")):
        v.copy_(0.2 * torch.randn(v.shape, generator=g))
      elif name.endswith(("running_var", ".1.weight")):
        v.copy_(0.5 + torch.rand(v.shape, generator=g))
  return model, {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _ours(state) -> raft.RAFT:
  variant, params = rw.convert(state)
  return rw.assign(raft.abstract(variant), {k: (v, k, v.shape) for k, v in params.items()}, "test")


def _parity(variant, size, iterations, shifts, seed):
  tv, state = _torchvision(variant, seed)
  a, b = _pairs(size, shifts)
  with torch.no_grad():
    theirs = tv(
      torch.from_numpy(a).permute(0, 3, 1, 2),
      torch.from_numpy(b).permute(0, 3, 1, 2),
      num_flow_updates=iterations,
    )
  theirs = np.stack([t.permute(0, 2, 3, 1).numpy() for t in theirs])
  model = _ours(state)
  run = jax.jit(lambda x, y: model(x, y, iterations=iterations, all_iterations=True))
  ours = np.asarray(run(a, b))
  diffs = np.abs(ours - theirs).reshape(iterations, -1).max(axis=1)
  print(f"\n{variant} {size} max |ours - torchvision| per iteration: {np.array2string(diffs)}")
  print(f"  largest |flow| per iteration: {np.abs(theirs).reshape(iterations, -1).max(1)}")
  return ours, theirs, diffs


@pytest.mark.xla_optimized
def test_raft_small_matches_torchvision_at_every_iteration():
  """2 pairs at 128×160 (a texture moved by (2.5, −1.5) and (−4, 3) px), 12 updates: every
  update's ×8 bilinear flow within 1e-4 px of torchvision's raft_small."""
  ours, theirs, diffs = _parity("raft_small", SMALL_SIZE, SMALL_ITERS, [(2.5, -1.5), (-4, 3)], 0)
  assert ours.shape == (SMALL_ITERS, 2, *SMALL_SIZE, 2)
  assert np.abs(theirs[-1]).max() > 1.0  # the updates move the flow: a real comparison
  assert np.all(diffs <= 1e-4), diffs


@pytest.mark.xla_optimized
@pytest.mark.slow
def test_raft_large_matches_torchvision_at_every_iteration():
  """1 pair at 128×128, 3 updates, random batch-norm statistics in the context encoder: convex
  upsampling, separable GRU, radius 4 all within 1e-4 px of torchvision's raft_large."""
  ours, theirs, diffs = _parity("raft_large", LARGE_SIZE, LARGE_ITERS, [(3.0, 1.0)], 1)
  assert np.abs(theirs[-1]).max() > 0.1
  assert np.all(diffs <= 1e-4), diffs


# ----------------------------------------------------------------------------- converters


def _as_princeton(state: dict) -> dict:
  """torchvision names → princeton-vl's, written from princeton-vl's modules (fnet / cnet
  encoders with conv1 + norm1 stems, convK + normK blocks whose projection norm is also
  registered as norm3 / norm4, update_block.encoder / gru / flow_head / mask), with the
  `module.` prefix of its DataParallel checkpoints."""
  update = {
    "motion_encoder.convcorr1.0": "encoder.convc1",
    "motion_encoder.convcorr2.0": "encoder.convc2",
    "motion_encoder.convflow1.0": "encoder.convf1",
    "motion_encoder.convflow2.0": "encoder.convf2",
    "motion_encoder.conv.0": "encoder.conv",
    "flow_head.conv1": "flow_head.conv1",
    "flow_head.conv2": "flow_head.conv2",
  }
  large = "mask_predictor.conv.weight" in state
  for gate in "zrq":
    for i in (1, 2):
      suffix = str(i) if large else ""
      update[f"recurrent_block.convgru{i}.conv{gate}"] = f"gru.conv{gate}{suffix}"
  out = {}
  for key, value in state.items():
    if key.endswith("num_batches_tracked"):
      continue
    parts = key.split(".")
    leaf = parts[-1]
    if parts[0] in ("feature_encoder", "context_encoder"):
      net = "fnet" if parts[0] == "feature_encoder" else "cnet"
      if parts[1] == "convnormrelu":
        new = [f"{'conv' if parts[2] == '0' else 'norm'}1"]
      elif parts[1] == "conv":
        new = ["conv2"]
      elif parts[3] == "downsample":
        new = parts[1:5]
        if parts[4] == "1":  # princeton-vl registers the projection norm twice
          twin = "norm3" if large else "norm4"  # residual blocks: 2 convs; bottlenecks: 3
          out[f"module.{net}.{'.'.join(parts[1:3])}.{twin}.{leaf}"] = value
      else:
        index = parts[3][-1]
        new = [*parts[1:3], f"{'conv' if parts[4] == '0' else 'norm'}{index}"]
      out[f"module.{net}.{'.'.join(new)}.{leaf}"] = value
    elif parts[0] == "update_block":
      out[f"module.update_block.{update['.'.join(parts[1:-1])]}.{leaf}"] = value
    else:  # mask_predictor
      module = "mask.0" if parts[1] == "convrelu" else "mask.2"
      out[f"module.update_block.{module}.{leaf}"] = value
  return out


@pytest.fixture(scope="module")
def states():
  return {v: _torchvision(v, 3)[1] for v in ("raft_small", "raft_large")}


@pytest.mark.parametrize("variant", ["raft_small", "raft_large"])
def test_princeton_checkpoints_convert_to_the_same_params(states, variant, tmp_path):
  """A princeton-vl checkpoint (module. prefix, duplicate projection norms) read from a .pth
  with weights_only gives exactly torchvision's tensors; so does the command line."""
  state = states[variant]
  princeton = _as_princeton(state)
  assert len(princeton) >= 106 and all(k.startswith("module.") for k in princeton)
  path = tmp_path / "raft.pth"
  torch.save({k: torch.from_numpy(v) for k, v in princeton.items()}, path)
  read, _ = rw.read_state_dict(str(path))
  assert rw.detect_layout(read) == "princeton"
  got_variant, ours = rw.convert(read)
  want_variant, want = rw.convert(state)
  assert got_variant == want_variant == variant
  assert ours.keys() == want.keys()
  assert all(np.array_equal(ours[k], want[k]) for k in want)
  assert rw.princeton_to_torchvision(read).keys() == {
    k for k in state if not k.endswith("num_batches_tracked")
  }
  out = tmp_path / "raft.npz"
  assert rw.main(["--princeton", str(path), "--out", str(out)]) == 0
  meta, params = rw.load_params(str(out))
  assert meta == {"format": 1, "variant": variant, "source": "princeton:raft.pth"}
  assert all(np.array_equal(params[k], want[k]) for k in want)


def test_princeton_rejects_a_duplicate_norm_that_differs(states):
  princeton = {k[len("module.") :]: v for k, v in _as_princeton(states["raft_large"]).items()}
  princeton["cnet.layer2.0.norm3.weight"] = princeton["cnet.layer2.0.norm3.weight"] + 1
  princeton["fnet.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ValueError) as e:
    rw.princeton_to_torchvision(princeton)
  assert "2 key(s)" in str(e.value)
  assert "cnet.layer2.0.norm3.weight (no equal cnet.layer2.0.downsample.1.weight)" in str(e.value)
  assert "fnet.extra.weight" in str(e.value)


def test_a_mismatched_checkpoint_names_every_tensor(states):
  state = dict(states["raft_small"])
  del state["update_block.flow_head.conv2.bias"]
  state["feature_encoder.conv.bias"] = np.zeros(7, np.float32)
  state["update_block.extra.weight"] = np.zeros((2, 2, 1, 1), np.float32)
  with pytest.raises(rw.CheckpointMismatchError) as e:
    rw.convert(state, "x.pth")
  message = str(e.value)
  assert "x.pth (torchvision layout, raft_small) does not match RAFT (3 mismatched" in message
  assert "missing: update_block.flow_head.conv2.bias (2,)" in message
  assert (
    "shape: feature_encoder.conv.bias is (128,) in the model, 'feature_encoder.conv.bias' (7,)"
  ) in message
  assert "unexpected: 'update_block.extra.weight' (2, 2, 1, 1)" in message


def test_the_converted_file_round_trips_and_is_checked(states, tmp_path):
  path = tmp_path / "small.pth"
  torch.save({k: torch.from_numpy(v) for k, v in states["raft_small"].items()}, path)
  out = tmp_path / "small.npz"
  assert rw.main(["--torchvision", str(path), "--out", str(out)]) == 0
  model = rw.load(str(out), variant="raft_small")
  want = rw.params_of(_ours(states["raft_small"]))
  got = rw.params_of(model)
  assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
  with pytest.raises(ValueError, match="holds raft_small weights, not raft_large"):
    rw.load(str(out), variant="raft_large")
  with pytest.raises(ValueError, match="no RAFT weights given"):
    rw.read_meta("")
  with pytest.raises(FileNotFoundError, match="do not exist"):
    rw.read_meta(str(tmp_path / "missing.npz"))
  np.savez(tmp_path / "other.npz", x=np.zeros(2))
  with pytest.raises(ValueError, match="is not a converted RAFT file"):
    rw.read_meta(str(tmp_path / "other.npz"))
  with pytest.raises(SystemExit):  # a torchvision file given as princeton-vl's
    rw.main(["--princeton", str(path), "--out", str(out)])


# ----------------------------------------------------------------------------- the flow function


@pytest.fixture(scope="module")
def small_model():
  return raft.build("raft_small", seed=5)


def _imagenet(x):
  """[−1, 1] frames → ImageNet-normalised ones."""
  mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
  return ((x + 1) / 2 - mean) / std


@pytest.mark.slow
def test_flow_function_is_raft_on_imagenet_frames_batch_independent_and_shardable(small_model):
  """RaftFlow(frame_a, frame_b) = RAFT(image1 = a, image2 = b) on the frames mapped to [−1, 1];
  each pair's flow is the same alone, in a batch, under vmap, and with the batch split over 2
  devices."""
  a, b = _pairs((64, 64), [(1.0, 2.0), (-2.0, 0.5)])
  fn = jax.jit(raft.RaftFlow(small_model, iterations=2))
  got = np.asarray(fn(_imagenet(a), _imagenet(b)))
  model = jax.jit(lambda x, y: small_model(x, y, iterations=2))
  np.testing.assert_allclose(got, np.asarray(model(a, b)), atol=1e-4)
  swapped = np.asarray(fn(_imagenet(b), _imagenet(a)))
  assert np.abs(got - swapped).max() > 1e-3  # the order matters, so the test can fail
  alone = np.asarray(fn(_imagenet(a[1:]), _imagenet(b[1:])))
  np.testing.assert_allclose(alone, got[1:], atol=1e-4)  # float rounding of batched convs
  mapped = jax.jit(jax.vmap(raft.RaftFlow(small_model, iterations=2)))
  np.testing.assert_allclose(
    np.asarray(mapped(_imagenet(a)[:, None], _imagenet(b)[:, None]))[:, 0], got, atol=1e-4
  )
  if len(jax.devices()) >= 2:
    mesh = make_mesh(2)
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names[0]))
    sharded = fn(*(jax.device_put(_imagenet(x), spec) for x in (a, b)))
    np.testing.assert_allclose(np.asarray(sharded), got, atol=1e-4)


def test_flow_function_resizes_frames_raft_cannot_take(small_model):
  """60×76 frames: RAFT runs at 64×80 (multiples of 8) and the flow comes back at 60×76 with
  its vectors scaled; 32×32 frames would run at 64×64 (the 4-level pyramid's minimum)."""
  assert raft.work_size(60, 76) == (64, 80) and raft.work_size(32, 32) == (64, 64)
  assert raft.work_size(224, 224) == (224, 224)
  a, b = _pairs((60, 76), [(1.0, 0.0)])
  flow = np.asarray(jax.jit(raft.RaftFlow(small_model, iterations=1))(_imagenet(a), _imagenet(b)))

  @jax.jit
  def by_hand(a, b):
    big = [jax.image.resize(x, (1, 64, 80, 3), "linear", antialias=False) for x in (a, b)]
    inner = small_model(*big, iterations=1)
    scale = jnp.asarray([76 / 80, 60 / 64])
    return jax.image.resize(inner, (1, 60, 76, 2), "linear", antialias=False) * scale

  assert flow.shape == (1, 60, 76, 2)
  np.testing.assert_allclose(flow, np.asarray(by_hand(a, b)), atol=1e-4)


def test_raft_rejects_sizes_it_cannot_take(small_model):
  x = jnp.zeros((1, 60, 64, 3))
  with pytest.raises(ValueError, match="multiples of 8"):
    small_model(x, x)
  x = jnp.zeros((1, 56, 64, 3))
  with pytest.raises(ValueError, match="at least 64 px a side"):
    small_model(x, x)


# ----------------------------------------------------------------------------- MGMAE


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
  path = tmp_path_factory.mktemp("raft") / "raft_small_random.npz"
  assert rw.main(["--random", "raft_small", "--seed", "5", "--out", str(path)]) == 0
  return str(path)


def test_mgmae_needs_converted_weights_for_raft(random_weights):
  from mgvm import masking

  grid = (2, 4, 4)
  with pytest.raises(ValueError, match=r"flow='raft_small' needs flow_weights=PATH"):
    masking.build({"kind": "mgmae", "flow": "raft_small"}, grid)
  with pytest.raises(ValueError, match="holds raft_small, not raft_large"):
    masking.build({"kind": "mgmae", "flow": "raft_large", "flow_weights": random_weights}, grid)
  with pytest.raises(ValueError, match="is for flow='raft_small' or 'raft_large', not flow='lk'"):
    masking.build({"kind": "mgmae", "flow_weights": random_weights}, grid)
  with pytest.raises(ValueError, match="flow_iterations must be an int >= 1"):
    masking.build({"kind": "mgmae", "flow": "raft_small", "flow_weights": random_weights,
                   "flow_iterations": 0}, grid)  # fmt: skip
  meta = rw.read_meta(random_weights)
  assert meta["variant"] == "raft_small" and "meaningless" in meta["source"]


def test_mgmae_with_raft_is_mgmae_with_the_raft_flow_function(random_weights):
  """`flow="raft_small"` from a config = the masker with that checkpoint's RaftFlow injected as
  flow_fn (one cached function per checkpoint and iteration count)."""
  from mgvm import masking
  from mgvm.masking import mgmae

  grid = (2, 8, 8)
  video = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 64, 64, 3)), jnp.float32)
  config = {"kind": "mgmae", "ratio": 0.5, "flow": "raft_small", "flow_weights": random_weights}
  masker = masking.build({**config, "flow_iterations": 2}, grid)
  assert masker.params["flow_weights"] == random_weights and masker.params["flow_iterations"] == 2
  key = jax.random.key(0)
  got = masker(key, video, None)
  fn = raft.flow_function("raft_small", random_weights, 2)
  assert fn is raft.flow_function("raft_small", random_weights, 2)
  injected = mgmae.mgmae_masker(grid, fn, ratio=0.5)(key, video, None)
  assert got.ids_keep.shape == (2, 2 * 32)
  np.testing.assert_array_equal(np.asarray(got.ids_keep), np.asarray(injected.ids_keep))


def test_the_mgmae_config_takes_raft_options(random_weights):
  from configs import pretrain
  from mgvm import masking

  config = pretrain.get_config("masker=mgmae")
  assert config.masking.flow == "lk" and config.masking.flow_weights == ""
  assert config.masking.flow_iterations == 6
  config.masking.flow = "raft_small"
  config.masking.flow_weights = random_weights
  masker = masking.build(config.masking, (8, 14, 14))
  assert masker.params["flow"] == "raft_small"


def test_random_weights_file_is_flagged(random_weights):
  assert os.path.getsize(random_weights) > 3_000_000  # 990,162 float32 values
  result = rw.check(random_weights, iterations=2)
  assert result["variant"] == "raft_small" and "meaningless" in result["source"]


@pytest.mark.slow
def test_pretraining_runs_mgmae_with_raft(tmp_path, synthetic_dir, random_weights):
  """train.py's runner: 3 pre-training steps with MGMAE masks from RAFT-small (8-frame 32-px
  clips, so RAFT runs at 64², 7 × 8 pairs per step), finite losses."""
  from configs import pretrain
  from mgvm import metrics as metrics_lib
  from mgvm.run import train as train_run
  from tests.helpers import tiny

  config = tiny(
    pretrain.get_config("runlocal,masker=mgmae"),
    synthetic_dir,
    total_steps=3,
    log_every_steps=1,
    checkpoint_every_steps=3,
  )
  config.masking.update(flow="raft_small", flow_weights=random_weights, flow_iterations=2)
  assert train_run.train(config, str(tmp_path), log=lambda _: None)["step"] == 3
  records = metrics_lib.read_metrics(os.path.join(str(tmp_path), "metrics.jsonl"))
  assert len(records) == 3 and all(np.isfinite(r["loss"]) for r in records)
