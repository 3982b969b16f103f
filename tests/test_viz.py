"""`python -m mgvm.viz masks`: PNG / GIF layout on a tiny synthetic set, exact tints, bad specs."""

import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mgvm import viz  # noqa: E402
from mgvm.masking.core import MaskOut  # noqa: E402
from tests.helpers import config_flags  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "pretrain.py") + ":runlocal"


@pytest.fixture(scope="module")
def flags(synthetic_dir):
  """`tests/helpers.py`'s tiny settings on the shared synthetic set, as command-line overrides."""
  return config_flags(synthetic_dir)


def test_default_list(flags):
  config = viz.load_config(CONFIG, [*flags, "--config.masking.ratio=0.5"])
  labels = [label for label, _ in viz.masker_specs(config)]
  assert labels == [
    "config: tube:0.5",
    "tube:0.5",
    "random:0.5",
    "running_cell:0.5",
    "mgtc:0.25",
    "everest:0.4",
    "mgmae:0.5",
  ]


@pytest.mark.slow
def test_command_writes_png_and_gif(flags, tmp_path, capsys):
  out = str(tmp_path / "sub" / "masks.png")
  result = viz.main(
    [
      "masks",
      "--config",
      CONFIG,
      "--out",
      out,
      "--index",
      "1",
      "--seed",
      "3",
      "--maskers",
      "config,tube,random,mgtc,everest, tube:0.5+mgtc:0.25",
      *flags,
    ]
  )
  # grid (4, 2, 2) = 16 tokens; "config" is tube 0.75 like "tube": shown once
  assert result["rows"][1:] == [
    "config: tube:0.75\n4 visible / 12 targets / 16 tokens",
    "random:0.75\n4 visible / 12 targets / 16 tokens",
    "mgtc:0.25\n12 visible / 0 targets / 16 tokens, 4 dropped",
    "everest:0.4\n9 visible / 0 targets / 16 tokens, 7 dropped",
    "tube:0.5+mgtc:0.25\n8 visible / 4 targets / 16 tokens, 4 dropped",
  ]
  assert result["frames"] == 8 and result["clip"]["frame_indices"]
  rows = len(result["rows"])  # 6 panel rows x 8 frame columns
  png = Image.open(out)
  assert (
    png.size
    == viz.png_size(rows, 8)
    == (
      viz.LEFT_PX + 8 * (viz.PANEL_PX + viz.GAP_PX),
      viz.TOP_PX + 6 * (viz.PANEL_PX + viz.GAP_PX) + viz.BOTTOM_PX,
    )
  )
  gif = Image.open(str(tmp_path / "sub" / "masks.gif"))
  assert gif.n_frames == 8
  side = 32 * 3  # panels upscaled to at least PANEL_PX
  assert gif.size == (side, 6 * side + 5 * viz.GIF_GAP_PX)
  assert "wrote" in capsys.readouterr().out


def test_mask_panel_hand_case():
  # grid (1, 2, 2), tubelet (2, 2, 2): frames [2, 4, 4]; token 0 top-left visible, token 1
  # top-right target, tokens 2-3 (bottom row) dropped
  frames = np.full((2, 4, 4, 3), 200, np.uint8)
  frames[..., 1] = 100
  out = MaskOut(jnp.array([[0]]), jnp.array([[1]]), jnp.array([[False, True, True, True]]))
  panel = viz.mask_panel(frames, out, (1, 2, 2))
  assert panel.shape == (2, 4, 4, 3) and panel.dtype == np.uint8
  visible, target = (200, 100, 200), (70, 35, 70)  # x, round(0.35 x)
  dropped = (52, 68, 148)  # round(0.4 * 0.35 x + 0.6 * (40, 90, 200))
  for f in range(2):
    np.testing.assert_array_equal(panel[f, :2, :2], np.broadcast_to(visible, (2, 2, 3)))
    np.testing.assert_array_equal(panel[f, :2, 2:], np.broadcast_to(target, (2, 2, 3)))
    np.testing.assert_array_equal(panel[f, 2:, :], np.broadcast_to(dropped, (2, 4, 3)))
  np.testing.assert_array_equal(viz.token_states(out, 4), [0, 1, 2, 2])


@pytest.mark.parametrize(
  "text, message",
  [
    ("tub", "unknown kind 'tub' (did you mean 'tube'?)"),
    ("tube:abc", "ratio 'abc' of 'tube' is not a number"),
    ("tube:", "a ratio is missing after 'tube:'"),
    ("mgtc:0.25+tube:0.9", "'mgtc' is a compressor; it goes after '+'"),
    ("tube:0.9+random:0.5", "'random' after '+' is not a compressor"),
    ("tube:0.9+mgtc:0.2+everest:0.4", "at most one '+compressor'"),
    (":0.5", "a kind is missing"),
  ],
)
def test_bad_masker_specs(text, message):
  with pytest.raises(ValueError, match="--maskers entry") as e:
    viz.parse_spec(text, 0.75)
  assert message in str(e.value)


def test_bad_spec_on_the_command_line(flags, tmp_path, capsys):
  for maskers, message in [
    ("tube,,random", "empty entry"),
    ("tube:1.5", "ratio must lie in [0, 1)"),
    ("random:0.1+mgtc:0.25", "visible tokens must be fewer"),
  ]:
    with pytest.raises(SystemExit) as e:
      viz.main(
        [
          "masks",
          "--config",
          CONFIG,
          "--out",
          str(tmp_path / "x.png"),
          "--maskers",
          maskers,
          *flags,
        ]
      )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
  assert not os.path.exists(tmp_path / "x.png")


def test_everest_embeddings_from_a_workdir(flags, tmp_path):
  """`--workdir`: EVEREST scores the checkpoint's patch embedding, not a fresh one."""
  import jax
  from flax import nnx

  from mgvm.tasks import build_model
  from mgvm.train import checkpoint as checkpoint_lib

  config = viz.load_config(CONFIG, flags)
  model = build_model(config, seed=5)
  state = nnx.state(model, nnx.Param)
  state = jax.tree.map(lambda x: x * 3.0 + 0.25, state)  # unlike any fresh init
  nnx.update(model, state)
  with checkpoint_lib.Checkpointer(
    str(tmp_path / "checkpoints"), save_every_steps=1, async_save=False
  ) as c:
    c.maybe_save(1, {"step": np.int32(1)}, state)
  video = np.random.default_rng(0).uniform(0, 1, (1, 8, 32, 32, 3)).astype(np.float32)
  want = np.asarray(model.encoder.embed(video))
  got = viz.patch_tokens(config, video, workdir=str(tmp_path))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert np.abs(viz.patch_tokens(config, video) - want).max() > 0.1
  with pytest.raises(FileNotFoundError, match="No checkpoint"):
    viz.patch_tokens(config, video, workdir=str(tmp_path / "empty"))


@pytest.mark.slow  # a figure per masker option
def test_mgmae_rows_show_the_masks_and_the_warped_map_of_the_masker_options(flags):
  import jax

  from mgvm.masking import mgmae

  config = viz.load_config(CONFIG, flags)
  video = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype(np.float32)
  spec = {"kind": "mgmae", "ratio": 0.75, "base_frame": "first"}
  rows = viz.mask_rows(config, video, [("mgmae:0.75", spec)], seed=0)
  assert [title.split("\n")[0] for title, _ in rows[1:]] == [
    "mgmae:0.75",
    "mgmae:0.75: warped mask map",
  ]
  volume = {
    base: np.asarray(
      mgmae.mask_volume(
        jax.random.key(0), video[None], grid=(4, 2, 2), ratio=0.75, base_frame=base
      )[0],
      np.float64,
    )
    for base in ("first", "middle")
  }
  assert np.abs(volume["first"] - volume["middle"]).max() > 0.1  # the option matters
  np.testing.assert_array_equal(rows[2][1], viz.heat_panel(viz.to_uint8(video), volume["first"]))
