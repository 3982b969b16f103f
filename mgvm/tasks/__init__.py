"""What differs per `config.task`, one module per task: `pretrain`, `finetune`, `detect`.

The runners (`mgvm.run.train`, `mgvm.run.evaluate`) and `mgvm.viz` ask `get(config.task)`
instead of branching on the task. A task module defines:

  PLOT_KEYS                                   metrics drawn in DIR/loss.png
  num_classes(config, source)                 class count (None without labels)
  build_model(config, *, num_classes, seed)   the Flax NNX model
  viz_model(config, *, seed)                  the model whose patch embeddings `mgvm.viz` scores
  train_dataset(config, source, *, local_batch, start_step, num_classes)
  train_step(config, graphdef, model, tx, schedule, *, num_classes)   a pure step function
  evaluate(config, ctx: EvalContext)          the result dict of `eval.py`
  summary(result)                             one line: the score and what it was measured on
  import_torch(config, checkpoint, *, num_classes, model)   params from torch weights (`--checkpoint`)

A new task is one new module here with these names.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

REQUIRED = (
  "PLOT_KEYS",
  "num_classes",
  "build_model",
  "viz_model",
  "train_dataset",
  "train_step",
  "evaluate",
  "summary",
  "import_torch",
)
_NOT_TASKS = ("common",)


def names() -> list[str]:
  """Every task module in this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_TASKS)


def get(name: str) -> ModuleType:
  """The task module of `config.task`; an unknown name fails listing the known ones."""
  known = names()
  if name not in known:
    raise ValueError(f"config.task must be one of {known}, got {name!r}")
  module = importlib.import_module(f"{__name__}.{name}")
  missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
  if missing:
    raise TypeError(f"task module {module.__name__} lacks {missing}")
  return module


def build_model(config, *, num_classes: int | None = None, seed: int | None = None):
  """The model of `config.task` (`seed` defaults to `config.seed`)."""
  return get(config.task).build_model(config, num_classes=num_classes, seed=seed)
