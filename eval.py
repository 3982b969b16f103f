"""Masked-reconstruction loss of a VideoMAE: `python eval.py --config configs/pretrain.py:runlocal --workdir DIR [--checkpoint PATH]`.

`--checkpoint` takes an official VideoMAE/MGMAE/EVEREST `.pth` or a Hugging Face VideoMAE
directory (no pickled code is executed); without it the config's model is freshly
initialised. Until the data pipeline lands (issue #3) the clips are generated moving
squares. Writes `DIR/eval.json` with the mean loss over `--num_batches` batches.
"""

import json
import os

import jax
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from mgvm import demo, masking
from mgvm.models.load import load_torch_checkpoint

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (and :args).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for eval.json.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Official .pth or Hugging Face directory.")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 4, "Batches to average over.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if _CHECKPOINT.value:
    model = load_torch_checkpoint(_CHECKPOINT.value, kind="pretrain",
                                  num_frames=config.num_frames, image_size=config.image_size)
  else:
    model = demo.build_mae(config)
  masker = masking.build(config.masking, model.grid)

  batch_loss = nnx.jit(lambda model, video, key: demo.reconstruction_loss(model, masker, video, key))

  key = jax.random.key(config.seed + 1)
  losses = []
  for i in range(_NUM_BATCHES.value):
    video = demo.moving_squares(jax.random.fold_in(key, 2 * i), config.batch_size,
                                config.num_frames, config.image_size)
    losses.append(float(batch_loss(model, video, jax.random.fold_in(key, 2 * i + 1))))
  result = {"loss": sum(losses) / len(losses), "num_batches": len(losses),
            "checkpoint": _CHECKPOINT.value, "masking": dict(config.masking)}
  os.makedirs(_WORKDIR.value, exist_ok=True)
  with open(os.path.join(_WORKDIR.value, "eval.json"), "w") as f:
    json.dump(result, f, indent=1)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
