"""Orbax checkpoints: items "state" (everything needed to resume) and "params" (weights only).

Both items are stored as nested dicts of arrays keyed by the pytree path (`encoder/blocks/0/
attn/qkv/kernel`, `opt_state/0/mu/...`; the `.value` of NNX Variables is dropped), so the
"params" item reads back without flax, and a restore rebuilds the caller's own pytree types
(`nnx.State`, optax namedtuples) from the abstract tree it passes.

Preemption: on construction (single-process runs) a SIGTERM handler only sets a flag;
`maybe_save` then saves at the next step and the loop should stop. Multi-process runs use
JAX's preemption sync point instead (every process reaches the same step), so `maybe_save`
must be called by all processes at every step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mgvm import workdir as workdir_lib
from mgvm.train.optim import path_names
from mgvm.trees import flatten_dict

ITEMS = ("state", "params")


def _registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  for name in ITEMS:
    registry.add(name, ocp.args.StandardSave, ocp.StandardCheckpointHandler())
    registry.add(name, ocp.args.StandardRestore, ocp.StandardCheckpointHandler())
  return registry


def _check_leaf(names: tuple[str, ...], leaf) -> None:
  dtype = getattr(leaf, "dtype", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    raise TypeError(
      f"Leaf {'/'.join(names)} is a typed PRNG key; store "
      "jax.random.key_data(key) in the checkpointed state instead."
    )


def to_nested(tree) -> dict[str, Any]:
  """Any pytree -> nested dict keyed by its path names (the on-disk layout)."""
  nested: dict[str, Any] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    names = path_names(path) or ("value",)
    _check_leaf(names, leaf)
    node = nested
    for name in names[:-1]:
      node = node.setdefault(name, {})
      if not isinstance(node, dict):
        raise ValueError(f"Pytree path {'/'.join(names)} collides with a leaf.")
    if names[-1] in node:
      raise ValueError(f"Two leaves share the path {'/'.join(names)}.")
    node[names[-1]] = leaf
  return nested


def from_nested(nested: dict[str, Any], like) -> Any:
  """Inverse of `to_nested`: leaves of `nested` arranged as the pytree `like`."""
  paths, treedef = jax.tree_util.tree_flatten_with_path(like)
  leaves = []
  for path, _ in paths:
    names = path_names(path) or ("value",)
    node = nested
    for name in names:
      if not isinstance(node, dict) or name not in node:
        raise KeyError(f"The checkpoint has no entry {'/'.join(names)}.")
      node = node[name]
    leaves.append(node)
  return jax.tree_util.tree_unflatten(treedef, leaves)


def _abstract(tree):
  """Leaves -> ShapeDtypeStruct with their sharding (the first local device when none)."""
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def convert(x):
    if isinstance(x, jax.ShapeDtypeStruct):
      if x.sharding is None:
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=default)
      return x
    if isinstance(x, jax.Array):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    x = np.asarray(x)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=default)

  return jax.tree.map(convert, tree)


def _shapes(nested) -> dict[str, tuple[int, ...]]:
  return {name: tuple(leaf.shape) for name, leaf in flatten_dict(nested, "/").items()}


def check_fits(manager: ocp.CheckpointManager, step: int, item: str, target: dict) -> None:
  """Raises `CheckpointMismatchError` naming every parameter of `item` at `step` whose shape
  differs from `target` (nested ShapeDtypeStructs), is missing from it or is not in it; a step
  whose `item` is missing or whose metadata cannot be read raises `CorruptCheckpointError`."""
  from mgvm.weights.params import mismatch_error, shape_differences

  lines = shape_differences(_shapes(target), _shapes(_item_metadata(manager, step, item)))
  if lines:
    raise mismatch_error(
      f"the {item!r} of step {step} in {os.fspath(manager.directory)} does not fit the model "
      f"that the config describes",
      lines,
    )


class CorruptCheckpointError(ValueError):
  """A checkpoint step cannot be read, lacks an item, or holds NaN / infinite values (which
  training never saves): its files are damaged."""


DELETION_GRACE_S = 0.5  # how long a failed read waits to tell a step being deleted from damage


class StepDeletedError(FileNotFoundError):
  """The step was deleted while it was read (the training run's clean-up of old steps)."""


def _step_dir(directory: str, step: int) -> str:
  return os.path.join(directory, str(step))


def _steps_note(directory: str) -> str:
  return (
    f"Steps there: {sorted(_steps(directory))}. Training resumes from the newest intact step; "
    f"--config.restore_step=N reads step N."
  )


def _unreadable(directory: str, step: int, item: str, error: BaseException) -> Exception:
  """The error to raise for a failed read: the step vanished (or is being deleted: its folder is
  gone a moment later), or its files are damaged."""
  if os.path.isdir(_step_dir(directory, step)):
    time.sleep(DELETION_GRACE_S)
  if not os.path.isdir(_step_dir(directory, step)):
    return StepDeletedError(f"step {step} was deleted from {directory} while it was read")
  cause = " ".join(str(error).split())
  cause = f"{type(error).__name__}: {cause[:300]}{'...' if len(cause) > 300 else ''}"
  return CorruptCheckpointError(
    f"step {step} in {directory} cannot be read (reading its {item!r} item: {cause}); its "
    f"files are damaged or incomplete. {_steps_note(directory)}"
  )


def _item_metadata(manager: ocp.CheckpointManager, step: int, item: str):
  """The stored tree of `item` at `step` (shapes and dtypes); a missing item or unreadable
  metadata raises `CorruptCheckpointError`."""
  directory = os.fspath(manager.directory)
  try:
    with _without_closed_loop_noise():
      meta = manager.item_metadata(step)[item]
  except KeyError:
    meta = None
  except Exception as e:  # damaged metadata files
    raise _unreadable(directory, step, item, e) from e
  if meta is None:
    raise CorruptCheckpointError(
      f"step {step} in {directory} has no {item!r} item ({_step_dir(directory, step)}/{item} is "
      f"missing or incomplete). {_steps_note(directory)}"
    )
  return getattr(meta, "tree", meta)


# When a read fails, the reads still in flight finish after Orbax closed its event loop, and
# each reports a "RuntimeError: Event loop is closed" through `sys.unraisablehook`.
def _is_closed_loop_noise(unraisable) -> bool:
  error = unraisable.exc_value
  return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


@contextlib.contextmanager
def _without_closed_loop_noise(grace_s: float = 0.3):
  """Runs the block with those reports dropped (the real error is raised and named instead);
  after a failure it waits `grace_s` for the late ones. Other unraisable errors pass through."""
  previous = sys.unraisablehook

  def hook(unraisable):
    if not _is_closed_loop_noise(unraisable):
      previous(unraisable)

  sys.unraisablehook = hook
  try:
    yield
  except BaseException:
    time.sleep(grace_s)
    raise
  finally:
    sys.unraisablehook = previous


def _read_item(manager: ocp.CheckpointManager, step: int, item: str, target: dict) -> dict:
  """`item` of `step` restored onto `target`: shapes checked first, values checked after."""
  directory = os.fspath(manager.directory)
  check_fits(manager, step, item, target)
  try:
    with _without_closed_loop_noise():
      restored = manager.restore(
        step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(target)})
      )[item]
  except Exception as e:
    raise _unreadable(directory, step, item, e) from e
  check_finite(restored, step, item, directory)
  return restored


@jax.jit
def _finite_leaves(tree):
  return jax.tree.map(lambda x: jnp.all(jnp.isfinite(x)), tree)


def check_finite(tree, step: int, item: str, directory: str) -> None:
  """Raises `CorruptCheckpointError` naming the step and the first leaves with NaN / inf: the
  trainer never saves a non-finite state, so such values mean the files were damaged."""
  floats = {
    "/".join(path_names(p)): x
    for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    if jnp.issubdtype(x.dtype, jnp.inexact)
  }
  bad = [name for name, ok in jax.device_get(_finite_leaves(floats)).items() if not ok]
  if bad:
    raise CorruptCheckpointError(
      f"the {item!r} of step {step} in {directory} holds NaN or infinite values in {len(bad)} "
      f"arrays ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}); training never saves "
      f"such values, so the files are damaged. {_steps_note(directory)}"
    )


def _steps(directory: str) -> list[int]:
  return [int(n) for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(directory) else []


def _resolve_directory(directory: str) -> str:
  """`directory`, or `directory/checkpoints` when only that holds checkpoints (a workdir)."""
  directory = os.path.abspath(os.fspath(directory))
  nested = os.path.join(directory, workdir_lib.CHECKPOINT_DIR)
  if os.path.isdir(nested) and not _has_steps(directory) and _has_steps(nested):
    return nested
  return directory


def _has_steps(directory: str) -> bool:
  return os.path.isdir(directory) and any(n.isdigit() for n in os.listdir(directory))


def _manager(
  directory: str,
  *,
  max_to_keep: int | None = None,
  async_save: bool = True,
  read_only: bool = False,
) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep,
    create=not read_only,
    read_only=read_only,
    enable_async_checkpointing=async_save,
  )
  return ocp.CheckpointManager(directory, options=options, handler_registry=_registry())


class Checkpointer:
  """Saves every `save_every_steps` steps (and on force / preemption), keeps the latest N.

  `maybe_save(step, state, params)` with `state` the full train-state pytree and `params`
  the model weights; `restore(abstract_state)` returns the latest state placed on the
  shardings of `abstract_state` (ShapeDtypeStructs or arrays).
  """

  def __init__(
    self, directory: str, *, max_to_keep: int = 3, save_every_steps: int, async_save: bool = True
  ):
    if save_every_steps < 0:
      raise ValueError(
        f"save_every_steps={save_every_steps} must be >= 0 (0: only forced and preemption saves)."
      )
    if max_to_keep is not None and max_to_keep < 1:
      raise ValueError(f"max_to_keep={max_to_keep} must be >= 1 (or None to keep all).")
    self.directory = os.path.abspath(os.fspath(directory))
    self.save_every_steps = int(save_every_steps)
    self._manager = _manager(self.directory, max_to_keep=max_to_keep, async_save=async_save)
    self._signal_received = False
    self._sync_point_reached = False
    self._saved_for_preemption = False
    self._multi_process = jax.process_count() > 1
    self._previous_handler = None
    self._handler_installed = False
    if not self._multi_process:  # jax's preemption notifier owns SIGTERM in multi-process runs.
      self._install_handler()

  # ------------------------------------------------------------------ preemption

  def _install_handler(self) -> None:
    if threading.current_thread() is not threading.main_thread():
      logging.warning("Checkpointer built outside the main thread: no SIGTERM handler.")
      return
    self._previous_handler = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, self._on_sigterm)
    self._handler_installed = True

  def _on_sigterm(self, signum, frame) -> None:
    if not self._signal_received:
      logging.warning("SIGTERM received: saving a checkpoint at the next step.")
    self._signal_received = True
    previous = self._previous_handler
    if callable(previous) and previous not in (signal.SIG_DFL, signal.SIG_IGN):
      previous(signum, frame)

  def preemption_requested(self) -> bool:
    """True once SIGTERM arrived (single process) or the preemption sync point was reached."""
    return self._signal_received or self._sync_point_reached

  def _check_sync_point(self, step: int) -> None:
    if not self._multi_process or self._sync_point_reached:
      return
    try:
      from jax.experimental import multihost_utils

      self._sync_point_reached = bool(multihost_utils.reached_preemption_sync_point(step))
    except (RuntimeError, AttributeError, ImportError):
      pass  # Preemption service not enabled.

  # ------------------------------------------------------------------ save / restore

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def maybe_save(self, step: int, state, params, *, force: bool = False) -> bool:
    """Saves both items when due (step % save_every_steps == 0), forced, or first asked for
    after a preemption notice; returns True when a save was started (async)."""
    step = int(step)
    self._check_sync_point(step)
    due = self.save_every_steps > 0 and step % self.save_every_steps == 0
    preempt = self.preemption_requested() and not self._saved_for_preemption
    if not (due or force or preempt):
      return False
    if step in self._manager.all_steps():
      return False
    args = ocp.args.Composite(
      state=ocp.args.StandardSave(to_nested(state)), params=ocp.args.StandardSave(to_nested(params))
    )
    saved = bool(self._manager.save(step, args=args, force=True))
    if saved and self.preemption_requested():
      self._saved_for_preemption = True
    return saved

  def restore(self, abstract_state, step: int | None = None):
    """The "state" item of `step` (default latest), with the structure and shardings of
    `abstract_state`; a damaged step raises `CorruptCheckpointError` (no fallback)."""
    self._manager.wait_until_finished()
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise FileNotFoundError(f"No checkpoint to restore in {self.directory}.")
    if step not in self._manager.all_steps():
      raise FileNotFoundError(
        f"No checkpoint for step {step} in {self.directory}; steps: {self.all_steps()}."
      )
    restored = _read_item(self._manager, step, "state", to_nested(_abstract(abstract_state)))
    _item_metadata(self._manager, step, "params")  # the weights-only item is there too
    return from_nested(restored, abstract_state)

  def restore_newest_intact(self, abstract_state, log: Callable[[str], None] = print):
    """(state, step) of the newest step that reads back intact. Each damaged newer step is
    reported through `log` (`logging.warning` when None); a model that does not fit is not damage and
    raises at once. Fails listing every step when none is intact."""
    self._manager.wait_until_finished()
    damaged = []
    for step in sorted(self.all_steps(), reverse=True):
      try:
        state = self.restore(abstract_state, step)
      except CorruptCheckpointError as e:
        damaged.append(step)
        _warn(log, f"WARNING: {e}")
        continue
      if damaged:
        _warn(
          log,
          f"WARNING: the newest checkpoints {damaged} in {self.directory} are damaged; resuming "
          f"from step {step}, the newest intact one",
        )
      return state, step
    raise CorruptCheckpointError(
      f"no intact checkpoint in {self.directory}: steps {sorted(damaged)} are all damaged "
      f"(above). Move {self.directory} away to start again from step 0."
    )

  def set_aside(self, after: int, log: Callable[[str], None] = print) -> str | None:
    """Moves the steps newer than `after` to `<directory>.set_aside/` (nothing is deleted), so a
    run resumed from `after` saves those steps afresh; returns that folder, or None if none.
    Every process calls it (process 0 moves the folders)."""
    self._manager.wait_until_finished()
    newer = [s for s in sorted(self.all_steps()) if s > after]
    if not newer:
      return None
    aside = self.directory.rstrip(os.sep) + ".set_aside"
    if jax.process_index() == 0:
      os.makedirs(aside, exist_ok=True)
      for step in newer:
        target, n = os.path.join(aside, str(step)), 1
        while os.path.exists(target):
          target, n = os.path.join(aside, f"{step}.{n}"), n + 1
        shutil.move(_step_dir(self.directory, step), target)
    if self._multi_process:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices("mgvm checkpoints set aside")
    self._manager.reload()
    _warn(log, f"WARNING: moved steps {newer} (newer than the resumed step {after}) to {aside}")
    return aside

  def wait(self) -> None:
    """Blocks until pending async saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Finishes saves, closes the manager and restores the previous SIGTERM handler."""
    self._manager.wait_until_finished()
    self._manager.close()
    if self._handler_installed:
      signal.signal(signal.SIGTERM, self._previous_handler)
      self._handler_installed = False

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _warn(log: Callable[[str], None] | None, message: str) -> None:
  """`message` to `log` (the run's log), else to `logging.warning`."""
  if log is None:
    logging.warning(message)
  else:
    log(message)


def load_params(directory: str, abstract_params=None, step: int | None = None):
  """The "params" item of the latest (or given) step; `read_params` without the step number."""
  return read_params(directory, abstract_params, step)[0]


def read_params(directory: str, abstract_params=None, step: int | None = None, *, retries: int = 3):
  """(the "params" item of the latest or given step, that step).

  With `abstract_params` (arrays or ShapeDtypeStructs, e.g. `nnx.split(model)[1]`) the result
  has its structure and shardings; without, a nested dict of arrays on the first local
  device. `directory` may also be a workdir whose `checkpoints/` holds the steps. When the
  latest step is deleted while it is read (a running training's clean-up of old steps), the
  new latest one is read instead; a damaged step raises `CorruptCheckpointError`.
  """
  directory = _resolve_directory(directory)
  if not _has_steps(directory):
    raise FileNotFoundError(
      f"No checkpoint found in {directory} (expected numbered step "
      "folders written by mgvm.train.checkpoint.Checkpointer)."
    )
  for attempt in range(retries + 1):
    try:
      return _read_params_once(directory, abstract_params, step)
    except StepDeletedError:
      if step is not None or attempt == retries:
        raise
      time.sleep(0.2 * (attempt + 1))
  raise AssertionError("unreachable")


def _read_params_once(directory: str, abstract_params, step: int | None):
  manager = _manager(directory, read_only=True)
  try:
    steps = list(manager.all_steps())
    if not steps:
      raise FileNotFoundError(f"No finished checkpoint in {directory}.")
    step = max(steps) if step is None else int(step)
    if step not in steps:
      raise FileNotFoundError(f"No checkpoint for step {step} in {directory}; steps: {steps}.")
    if abstract_params is not None:
      target = to_nested(_abstract(abstract_params))
    else:
      meta = _item_metadata(manager, step, "params")
      target = _abstract(jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), meta))
    restored = _read_item(manager, step, "params", target)
  finally:
    manager.close()
  return (restored if abstract_params is None else from_nested(restored, abstract_params)), step
