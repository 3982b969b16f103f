"""Pre-trains a model from a config: `python train.py --config configs/pretrain.py:runlocal --workdir DIR`.

Until the tf.data pipeline and the checkpointed loop land (issue #3), this runs the
jit-compiled VideoMAE pre-training step on generated moving-square clips
(`mgvm.demo.pretrain`) and writes `DIR/metrics.jsonl`.
"""

from absl import app, flags
from ml_collections import config_flags

from mgvm import demo

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (and :args).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics (and, later, checkpoints).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  demo.pretrain(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
