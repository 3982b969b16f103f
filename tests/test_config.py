"""`mgvm.config.load_config`: the command-line tools read configs as `train.py` does."""

import pathlib
import sys

import pytest

from mgvm.config import load_config

CONFIGS = str(pathlib.Path(__file__).resolve().parents[1] / "configs")
CONFIG = f"{CONFIGS}/pretrain.py"


def test_overrides_are_typed_like_train_py_reads_them():
  config = load_config(
    f"{CONFIG}:runlocal,masker=random",
    ["--config.masking.ratio=0.5", "--config.data.target_fps=(4.0,8.0)", "--config.mesh.data=1"],
  )
  assert config.masking.kind == "random" and config.masking.ratio == 0.5
  assert config.data.target_fps == (4.0, 8.0) and config.mesh.data == 1


@pytest.mark.parametrize(
  "spec, overrides, error, message",
  [
    (
      ":runlocal",
      ["--config.masking.rato=0.5"],
      ValueError,
      "has no key 'rato' (did you mean 'ratio'?)",
    ),
    (
      ":runlocal",
      ["--config.mskng.ratio=0.5"],
      ValueError,
      "has no key 'mskng' (did you mean 'masking'?)",
    ),
    (":runlocal", ["--config.total_steps=abc"], ValueError, "--config.total_steps=abc"),
    (":runlocal", ["total_steps=3"], ValueError, "overrides look like --config.KEY=VALUE"),
    (":runlokal", [], ValueError, "unknown config argument 'runlokal'"),
  ],
)
def test_mistakes_fail_naming_the_key_or_argument(spec, overrides, error, message):
  with pytest.raises(error) as e:
    load_config(CONFIG + spec, overrides)
  assert message in str(e.value)


def test_a_missing_config_file_is_named():
  with pytest.raises(FileNotFoundError, match="no file 'configs/nope.py'"):
    load_config("configs/nope.py:runlocal")


def test_every_option_of_the_masker_is_settable_from_the_command_line():
  """MGMAE's knobs were not in the locked config (issue #16): now every option of a masker's
  builder is there at the builder's default, and an override reaches the masker."""
  import inspect

  from mgvm import masking

  config = load_config(
    f"{CONFIG}:runlocal,masker=mgmae",
    ["--config.masking.base_frame=random", "--config.masking.reproduce_warp_bug=True"],
  )
  defaults = {
    k: d for k, d in masking.accepted_keys("mgmae").items() if d is not inspect.Parameter.empty
  }
  assert set(config.masking) == {"kind", *defaults}
  assert config.masking.base_frame == "random" and config.masking.reproduce_warp_bug is True
  assert config.masking.hole_filling == defaults["hole_filling"]
  with pytest.raises(ValueError, match="base_frame must be one of"):
    masking.build({**config.masking.to_dict(), "base_frame": "sideways"}, (4, 4, 4))


def test_a_recipe_fixes_its_arguments_and_sets_its_keys(monkeypatch):
  import types

  fake = {
    "pretrain": {
      "toy": dict(
        args=dict(dataset="ssv2", masker="random"),
        set={
          "total_steps": 0,
          "total_epochs": 800,
          "optim.warmup_epochs": 40,
          "optim.warmup_steps": 0,
          "batch_size": 2048,
          "masking.ratio": 0.75,
        },
      ),  # fmt: skip
      "typo": dict(args={}, set={"optim.warmup_epoch": 40}),
    }
  }
  import configs

  module = types.SimpleNamespace(RECIPES=fake)
  monkeypatch.setitem(sys.modules, "configs.recipes", module)
  monkeypatch.setattr(configs, "recipes", module, raising=False)
  c = load_config(f"{CONFIGS}/pretrain.py:recipe=toy", ["--config.optim.base_lr=3e-4"])
  assert (c.total_steps, c.total_epochs, c.optim.warmup_epochs, c.batch_size) == (0, 800, 40, 2048)
  assert c.masking.kind == "random" and c.masking.ratio == 0.75 and c.optim.base_lr == 3e-4
  assert c.data.frame_stride == 2  # dataset=ssv2 applied: pre-training every 2nd frame
  with pytest.raises(ValueError, match="sets masker='random'; the argument masker='running_cell'"):
    load_config(f"{CONFIGS}/pretrain.py:recipe=toy,masker=running_cell")
  with pytest.raises(ValueError, match="cannot be combined with runlocal"):
    load_config(f"{CONFIGS}/pretrain.py:recipe=toy,runlocal")
  with pytest.raises(ValueError, match="unknown pretrain recipe 'toy2'; known: toy, typo"):
    load_config(f"{CONFIGS}/pretrain.py:recipe=toy2")
  with pytest.raises(ValueError, match="'optim.warmup_epoch', but the config has no such key"):
    load_config(f"{CONFIGS}/pretrain.py:recipe=typo")


def test_lr_multipliers_take_pattern_pairs_from_the_command_line():
  c = load_config(
    f"{CONFIGS}/detect.py:runlocal", ["--config.optim.lr_multipliers=(('localizer', 2.0),)"]
  )
  assert tuple(map(tuple, c.optim.lr_multipliers)) == (("localizer", 2.0),)


def test_the_study_twins_share_data_tubelets_and_model():
  """`pretrain.py:study` and `finetune.py:study` read the same grating-background set at 32 px
  in 2 x 8 x 8 tubelets with one model, so a study pre-training initialises the fine-tuning, and
  the set differs from runlocal's only in size and background."""
  from configs import finetune, pretrain

  pre, fine, local = (
    pretrain.get_config("study"),
    finetune.get_config("study"),
    pretrain.get_config("runlocal"),
  )
  assert pre.data.synthetic.to_dict() == fine.data.synthetic.to_dict()
  assert pre.data.synthetic.background_pattern == "gratings" and pre.image_size == 32
  assert tuple(pre.model.tubelet) == tuple(fine.model.tubelet) == (2, 8, 8)
  for key in ("dim", "depth", "num_heads"):
    assert pre.model[key] == fine.model[key] == local.model[key]
  differ = {
    k for k, v in pre.data.synthetic.to_dict().items() if v != local.data.synthetic.to_dict()[k]
  }
  assert differ == {"image_size", "background_detail", "background_pattern"}
  assert pre.total_steps == 24_000
  assert (fine.total_steps, fine.optim.warmup_steps) == (1000, 83)  # the budget the gain shows at
