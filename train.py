"""Trains from a config: `python train.py --config configs/pretrain.py:runlocal --workdir DIR`.

`configs/pretrain.py` pre-trains a VideoMAE, `configs/finetune.py` fine-tunes a classifier
(`--config.init_from=PRETRAIN_DIR`). Rerunning with the same `--workdir` resumes from its
latest checkpoint. Writes DIR/checkpoints, DIR/metrics.jsonl, DIR/tensorboard, DIR/loss.png.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mgvm import cli
from mgvm.run import train as runner

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config file (and :args).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.ERROR)  # keep Orbax's INFO/WARNING chatter out of the way
  message, status = runner.outcome(runner.train(_CONFIG.value, _WORKDIR.value))
  print(message)
  if status:
    sys.exit(status)


if __name__ == "__main__":
  cli.run(main)
