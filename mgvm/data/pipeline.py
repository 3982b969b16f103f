"""The tf.data input pipeline: TFRecord shards -> local numpy batches (docs/algorithms.md §0.4, docs/data.md).

Order (dmvr's): this host's shards -> interleave -> parse -> choose frame indices and the crop
box by FPS and seed -> decode only those frames (only the crop window when one view is taken)
-> resize -> uint8 -> batch -> prefetch. The host draws the flip and erasing boxes but leaves the
per-pixel work (flip, normalise, erase) to the accelerator: `mgvm.data.device_ops.model_video`
inside the jitted step (docs/data.md, "Where each step runs").

Training modes repeat forever and are a pure function of (files, seed, process_index): every
random draw is seeded from (seed, process_index, position in the shuffled example stream), and
`start_step` skips already-consumed records before they are decoded, so a resumed run sees
exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

import codecs
import functools
import math
import os
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from mgvm.data import format as fmt
from mgvm.data import sampling, video_ops

MODES = ("pretrain", "finetune", "eval")
# What `format.parse_example(..., with_motion=True)` adds, and `make_dataset(motion=True)` reads.
MOTION_KEYS = ("motion", "motion_valid", "motion_block")
AUTOTUNE = tf.data.AUTOTUNE
PREFETCH_BATCHES = 2  # ready batches held ahead of the step: enough to hide a step's jitter
RAM_BUDGET_FRACTION = 0.25  # of the host's memory, for the autotuned buffers


def host_cores() -> int:
  """The cores this process may run on (what `taskset` / a container allows)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def options(threads: int = 0) -> tf.data.Options:
  """Every pipeline's tf.data options: a private pool of `threads` threads (0: one per core of
  `host_cores`), one thread per op (parallelism comes from the parallel map over clips),
  deterministic order, and autotuned buffers within `RAM_BUDGET_FRACTION` of the host's RAM."""
  if threads < 0 or int(threads) != threads:
    raise ValueError(f"threads must be an integer >= 0 (0: all cores), got {threads}")
  o = tf.data.Options()
  o.deterministic = True
  o.threading.private_threadpool_size = int(threads) or host_cores()
  o.threading.max_intra_op_parallelism = 1
  try:
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    o.autotune.ram_budget = int(ram * RAM_BUDGET_FRACTION)
  except (ValueError, OSError, AttributeError):
    pass
  return o


def list_files(files: str | Sequence[str]) -> list[str]:
  """Expands file names / glob patterns (each sorted, in the given order)."""
  patterns = [files] if isinstance(files, str) else list(files)
  if not patterns:
    raise ValueError("no input files given (files is empty)")
  out = []
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise FileNotFoundError(f"no files match {pattern!r}")
    out.extend(matched)
  return out


def host_files(
  files: str | Sequence[str], process_index: int = 0, process_count: int = 1
) -> list[str]:
  """This host's shards: every `process_count`-th file starting at `process_index`."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, {process_count}), got {process_index}")
  all_files = list_files(files)
  mine = all_files[process_index::process_count]
  if not mine:
    raise ValueError(
      f"process {process_index} of {process_count} gets no files: only "
      f"{len(all_files)} match {files!r}; write at least {process_count} shards"
    )
  return mine


def count_records(files: Sequence[str]) -> int:
  """Number of records (videos) in `files`; reads them, decodes nothing."""
  ds = tf.data.TFRecordDataset(list(files))
  return int(ds.reduce(np.int64(0), lambda n, _: n + 1))


def count_items(files: Sequence[str], items_of: Callable | None = None) -> int:
  """Evaluation items (views, keyframes) in `files`: `items_of(serialized) -> int64 scalar` summed
  over the records (one per record without it); decodes no frames unless `items_of` does."""
  if items_of is None:
    return count_records(files)
  ds = tf.data.TFRecordDataset(list(files)).map(items_of, num_parallel_calls=AUTOTUNE)
  return int(ds.reduce(np.int64(0), lambda n, k: n + tf.cast(k, tf.int64)))


def busiest_host_batches(
  files: str | Sequence[str],
  *,
  batch_size: int,
  process_count: int,
  items_per_record: int = 1,
  items_of: Callable | None = None,
) -> int:
  """Evaluation batches of the host with the most items (each host reads every
  `process_count`-th file): pass it to every host as `eval_batches`, so that all run the same
  number of steps (the others pad with fully-masked batches). A record has `items_per_record`
  items, or `items_of(serialized)` (`count_items`)."""
  all_files = list_files(files)
  counts = [
    count_items(all_files[i::process_count], items_of) * items_per_record
    for i in range(process_count)
  ]
  return max(math.ceil(n / batch_size) for n in counts)


def eval_num_batches(
  files: str | Sequence[str],
  *,
  batch_size: int,
  num_clips: int = 1,
  num_crops: int = 1,
  process_count: int = 1,
) -> int:
  """`busiest_host_batches` of classification clips (`num_clips * num_crops` views a video)."""
  return busiest_host_batches(
    files,
    batch_size=batch_size,
    process_count=process_count,
    items_per_record=num_clips * num_crops,
  )


class BadDataError(ValueError):
  """A record failed a data check of the pipeline (no frames, a label outside the classes)."""


BAD_DATA = "bad data: "  # starts the message of every data check `numpy_batches` converts


def numpy_batches(ds: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
  """Batches as dicts of numpy arrays; a failed data check raises `BadDataError` (one line)."""
  it = ds.as_numpy_iterator()
  while True:
    try:
      batch = next(it)
    except StopIteration:
      return
    except tf.errors.InvalidArgumentError as e:
      text = e.message or str(e)
      start = text.find(BAD_DATA)
      if start < 0:
        raise
      # TF's text: 'assertion failed: [MESSAGE]\n\t [[node ...', MESSAGE C-escaped
      line = text[start:].split("\n")[0]
      line = line[:-1] if line.endswith("]") else line
      message = codecs.escape_decode(line.encode())[0].decode("utf-8", "replace")
      raise BadDataError(message) from None
    yield batch


def sub_seed(seed: int, process_index: int, stream: int) -> int:
  """A seed of its own for each (run seed, host, random stream): hosts never share a stream."""
  return int(np.random.SeedSequence([seed, process_index, stream]).generate_state(1)[0])


def _check(ok, *message):
  """`tf.debugging.Assert(ok, ...)` whose message (the joined strings / scalars) starts with
  `BAD_DATA`."""
  parts = [p if isinstance(p, str) else tf.strings.as_string(p) for p in message]
  return tf.debugging.Assert(ok, [tf.strings.join([BAD_DATA, *parts])])


def parse_record(serialized, parse_fn, num_classes: int | None = None):
  """`parse_fn(serialized)` and its frame count; a record without frames, or (with `num_classes`)
  with a label outside `[0, num_classes)`, fails naming its id."""
  ex = parse_fn(serialized)
  n = tf.shape(ex["frames"])[0]
  checks = [_check(n > 0, "video/id '", ex["id"], "': no frames (image/encoded is empty)")]
  if num_classes is not None:
    label = ex["label"]
    checks.append(
      _check(
        (label >= 0) & (label < num_classes),
        "video/id '",
        ex["id"],
        "': label ",
        label,
        f" is outside [0, {num_classes}) (num_classes={num_classes}; -1 = unlabelled)",
      )
    )
  with tf.control_dependencies(checks):
    n = tf.identity(n)
  return ex, n


TEMPORAL = ("dense", "segment")


def parse_rand_augment(spec: str) -> dict | None:
  """timm-style 'rand-m7-n4-mstd0.5-inc1' → keyword arguments of `augment.rand_augment`.

  "" means off. Only the increasing op set (`inc1`) is implemented; `m` magnitude (0-10), `n`
  ops per clip, `mstd` magnitude std, `p` probability per op (default 0.5).
  """
  if not spec:
    return None
  parts = spec.split("-")
  if parts[0] != "rand":
    raise ValueError(f"rand_augment must look like 'rand-m7-n4-mstd0.5-inc1', got {spec!r}")
  kwargs, names = {}, {"m": "magnitude", "n": "num_layers", "mstd": "magnitude_std", "p": "prob"}
  for part in parts[1:]:
    key = next((k for k in ("mstd", "inc", "m", "n", "p") if part.startswith(k)), None)
    try:
      value = float(part[len(key) :]) if key else None
    except ValueError:
      value = None
    if value is None:
      raise ValueError(f"rand_augment {spec!r}: cannot parse {part!r} (known: m, n, mstd, p, inc)")
    if key == "inc":
      if value != 1:
        raise ValueError(f"rand_augment {spec!r}: only the increasing op set (inc1) is implemented")
      continue
    kwargs[names[key]] = int(value) if key == "n" else value
  return kwargs


def _check_args(
  mode,
  num_frames,
  image_size,
  batch_size,
  target_fps,
  frame_stride,
  shuffle_buffer,
  num_clips,
  num_crops,
  start_step,
  temporal,
  num_sample,
  rand_augment,
  random_erase,
):
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  for name, value in [
    ("num_frames", num_frames),
    ("image_size", image_size),
    ("batch_size", batch_size),
    ("shuffle_buffer", shuffle_buffer),
    ("num_clips", num_clips),
    ("num_crops", num_crops),
    ("num_sample", num_sample),
  ]:
    if int(value) != value or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value}")
  if int(start_step) != start_step or start_step < 0:
    raise ValueError(f"start_step must be an integer >= 0, got {start_step}")
  if temporal not in TEMPORAL:
    raise ValueError(f"temporal must be one of {TEMPORAL}, got {temporal!r}")
  choices = sampling.check_target_fps_choices(target_fps)
  sampling.stride_for_np(1.0, choices[0] if choices else None, frame_stride)  # validates both
  if mode == "eval" and choices and len(choices) > 1:
    raise ValueError(f"eval takes one target_fps, got the list {list(choices)}")
  if batch_size % num_sample:
    raise ValueError(
      f"batch_size={batch_size} must be a multiple of num_sample={num_sample} "
      f"(each video gives num_sample consecutive clips)"
    )
  if not 0 <= random_erase <= 1:
    raise ValueError(f"random_erase must be a probability in [0, 1], got {random_erase}")
  if mode != "finetune" and (rand_augment or random_erase):
    raise ValueError(
      f"rand_augment and random_erase are fine-tuning augmentations; "
      f"mode={mode!r} got rand_augment={rand_augment!r}, random_erase={random_erase}"
    )
  if mode == "eval" and num_sample != 1:
    raise ValueError(
      f"num_sample (repeated augmentation) is for training, got {num_sample} in eval"
    )
  return choices, parse_rand_augment(rand_augment)


def _train_indices(fps, n, *, num_frames, temporal, fps_choices, frame_stride, seed):
  """(indices int32 [T], stride float64): the clip's source frames in training."""
  s_time, s_fps = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  if temporal == "segment":
    return (
      sampling.segment_train_indices(n, num_frames, s_time),
      tf.cast(n, tf.float64) / float(num_frames),
    )
  if fps_choices is None:
    stride = sampling.stride_for(fps, None, frame_stride)
  elif len(fps_choices) == 1:
    stride = sampling.stride_for(fps, fps_choices[0], frame_stride)
  else:
    stride = sampling.stride_from_fps(fps, sampling.draw_target_fps(fps_choices, s_fps))
  start = sampling.train_start(n, stride, num_frames, s_time)
  return sampling.clip_indices(n, stride, num_frames, start), stride


def _eval_indices(fps, n, *, num_frames, temporal, fps_choices, frame_stride, num_clips):
  """(indices int32 [K, T], stride float64): the evaluation clips' source frames."""
  if temporal == "segment":
    return (
      sampling.segment_eval_indices(n, num_frames, num_clips),
      tf.cast(n, tf.float64) / float(num_frames),
    )
  stride = sampling.stride_for(fps, fps_choices[0] if fps_choices else None, frame_stride)
  return sampling.eval_indices(n, stride, num_frames, num_clips), stride


def _select_frames(video, *per_frame, num_frames, mode, group):
  """(video [V, T, S, S, 3], *per_frame [V, T]): the `num_frames` most informative frames of each
  uint8 window `video` [V, W, S, S, 3] and of each `per_frame` [V, W] (source indices, positions),
  in groups of `group` consecutive frames (`sampling.select_frame_positions`,
  `mgvm.masking.frames`)."""
  positions = sampling.select_frame_positions(sampling.frame_change(video), num_frames, mode, group)
  return tuple(tf.gather(x, positions, axis=1, batch_dims=1) for x in (video, *per_frame))


def _positions(indices, stride, temporal):
  """int64 [..., T]: the clips' source frames unwrapped (`sampling.clip_positions`; segments
  never wrap)."""
  if temporal == "segment":
    return tf.cast(indices, tf.int64)
  return sampling.clip_positions(indices, stride)


def _motion_parser(parse_fn):
  """`parse_fn` that also reads the motion field; a custom one must return its keys."""
  if parse_fn is None:
    return functools.partial(fmt.parse_example, with_motion=True)

  def parse(serialized):
    ex = parse_fn(serialized)
    missing = [k for k in MOTION_KEYS if k not in ex]
    if missing:
      raise ValueError(
        f"motion=True needs the motion field from parse_fn, which lacks {missing} (return "
        f"mgvm.data.format.parse_example(..., with_motion=True)'s keys)"
      )
    return ex

  return parse


def _check_motion(motion_block, image_size, rand_augment):
  if int(motion_block) != motion_block or motion_block < 1 or image_size % motion_block:
    raise ValueError(
      f"motion_block must be an integer >= 1 dividing image_size ({image_size}), got {motion_block}"
    )
  if rand_augment:
    raise ValueError(
      f"motion=True with rand_augment={rand_augment!r} is not supported: RandAugment's "
      f"geometric ops (rotate, shear, translate) move pixels the motion field does not follow; "
      f"pass rand_augment='' or motion=False"
    )


def _clip_fps(fps, stride):
  """float32: the rate the clip shows, source fps / stride."""
  return tf.cast(tf.cast(tf.cast(fps, tf.float32), tf.float64) / stride, tf.float32)


def make_dataset(
  files: str | Sequence[str],
  *,
  mode: str,
  num_frames: int,
  image_size: int,
  batch_size: int,
  target_fps: float | Sequence[float] | None = None,
  frame_stride: int = 4,
  temporal: str = "dense",
  seed: int = 0,
  shuffle_buffer: int = 256,
  num_clips: int = 1,
  num_crops: int = 1,
  flip: bool = True,
  crop_scale: tuple[float, float] = (0.08, 1.0),
  rand_augment: str = "",
  random_erase: float = 0.0,
  num_sample: int = 1,
  start_step: int = 0,
  process_index: int = 0,
  process_count: int = 1,
  eval_batches: int | None = None,
  parse_fn=None,
  num_classes: int | None = None,
  threads: int = 0,
  host_independent_batches: bool = False,
  frame_selection: str = "",
  frame_selection_window: int = 2,
  frame_selection_group: int = 2,
  motion: bool = False,
  motion_block: int = 16,
) -> tf.data.Dataset:
  """Batched clips for this host; see docs/data.md for the element keys.

  `files`: paths or glob patterns. `batch_size` is per host. Train modes ("pretrain":
  multi-scale crop; "finetune": random resized crop + optional flip, then optional
  `rand_augment` spec and `random_erase` probability) repeat forever, shuffle files and examples
  with `seed`, drop the remainder, and start at batch `start_step`. `target_fps` may be a list in
  training (one drawn per clip); `temporal="segment"` samples one frame per segment (SSv2).
  `num_sample` > 1 (repeated augmentation) decodes each video once and gives `num_sample`
  consecutive, differently augmented clips of it.
  "eval": one pass; each video gives `num_clips * num_crops` consecutive views; the last batch
  is zero-padded with `mask` False; `eval_batches` pads further with fully-masked batches to
  exactly that many (see `eval_num_batches`), and fails if there are more.
  `parse_fn(serialized) -> dict` reads another record format (default `format.parse_example`).
  `threads`: the pipeline's private thread pool (0: one per core; `options`).
  `num_classes`: a record whose label is outside `[0, num_classes)` fails the iterator naming its
  id and label (`BadDataError` through `numpy_batches`); None checks nothing (pre-training).
  `host_independent_batches` (training): every host reads every file and takes its slice of each
  global batch, so the global batches are the same for any `process_count` (`train_stream`).
  `frame_selection` ("" off, "segment", "global"; experimental, `mgvm.masking.frames`): every
  clip (each view) is first sampled `frame_selection_window` times as long, at the same stride
  (or segments), and keeps its `num_frames` most changing frames in groups of
  `frame_selection_group` consecutive ones (the tubelet's frames), in temporal order; the
  energy is computed on the uint8 view the model gets. `frame_indices` are then the kept source
  frames and `stride` the window's.
  `motion`: every clip (each view) also carries the stored codec motion field on its token grid,
  `motion` float32 [T, S/motion_block, S/motion_block, 2] (model pixels, from clip frame k − 1 to
  k) and `motion_valid` float32 [T, S/motion_block, S/motion_block] (docs/data.md, "Motion in
  clips"); flip it with `device_ops.model_motion`. Every record needs the field; not with
  `rand_augment`.
  """
  fps_choices, ra_kwargs = _check_args(
    mode,
    num_frames,
    image_size,
    batch_size,
    target_fps,
    frame_stride,
    shuffle_buffer,
    num_clips,
    num_crops,
    start_step,
    temporal,
    num_sample,
    rand_augment,
    random_erase,
  )
  if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
    raise ValueError(f"num_classes must be an integer >= 1 or None, got {num_classes}")
  sampling.check_frame_selection(
    frame_selection, frame_selection_window, num_frames, frame_selection_group
  )
  if motion:
    _check_motion(motion_block, image_size, rand_augment)
  # Frames sampled per clip: a window `frame_selection_window` times the clip when selecting.
  window = num_frames * int(frame_selection_window) if frame_selection else num_frames
  select = (
    functools.partial(
      _select_frames, num_frames=num_frames, mode=frame_selection, group=frame_selection_group
    )
    if frame_selection
    else None
  )
  parse_fn = _motion_parser(parse_fn) if motion else parse_fn or fmt.parse_example
  # Clips' motion fields: (motion, motion_valid) from the record, unwrapped positions [V, T] and
  # crop boxes [V, 4] in stored pixels.
  clip_motion = (
    functools.partial(_clip_motion, size=image_size, block=int(motion_block)) if motion else None
  )
  if mode == "eval":
    files = host_files(files, process_index, process_count)
    return _eval_dataset(
      files,
      num_frames=num_frames,
      image_size=image_size,
      batch_size=batch_size,
      fps_choices=fps_choices,
      frame_stride=frame_stride,
      temporal=temporal,
      num_clips=num_clips,
      num_crops=num_crops,
      eval_batches=eval_batches,
      parse_fn=parse_fn,
      num_classes=num_classes,
      threads=threads,
      window=window,
      select=select,
      clip_motion=clip_motion,
    )
  if eval_batches is not None:
    raise ValueError(f"eval_batches is for mode='eval', got mode={mode!r}")
  files, streams = training_files(
    files, process_index, process_count, host_independent=host_independent_batches
  )
  base = tf.constant([seed, streams], tf.int64)

  # One view per decoded clip and no RandAugment (which needs whole frames): decode only the
  # crop window. Otherwise decode whole frames once and crop each view from them.
  crop_decode = num_sample == 1 and ra_kwargs is None

  def crop_box(height, width, seed):
    if mode == "pretrain":
      return video_ops.multi_scale_crop_box(height, width, image_size, seed)
    return video_ops.random_resized_crop_box(height, width, seed, scale=tuple(crop_scale))

  def view(ex, indices, positions, frames, seed):
    """One augmented view: uint8 pixels plus the draws `device_ops.model_video` applies (and,
    with `positions`, the clip's motion field)."""
    jpegs = ex["frames"]
    s_crop, s_flip, s_rand_augment, s_erase = tf.unstack(
      tf.random.experimental.stateless_split(seed, 4)
    )
    if frames is None:
      box = crop_box(*video_ops.jpeg_size(jpegs), s_crop)
      clip = video_ops.resize(video_ops.decode_frames(jpegs, indices, box=box), image_size)
    else:
      if ra_kwargs is not None:  # on the decoded frames, before the crop (as VideoMAE)
        from mgvm.data import augment

        frames = augment.rand_augment(frames, s_rand_augment, **ra_kwargs)
      shape = tf.shape(frames)
      box = crop_box(shape[1], shape[2], s_crop)
      clip = video_ops.crop_and_resize(frames, box, image_size)
    out = {"video": video_ops.to_uint8(clip)}
    if select is not None:
      video, kept, *rest = select(
        out["video"][None], indices[None], *([] if positions is None else [positions[None]])
      )
      out.update(video=video[0], frame_indices=kept[0])
      positions = rest[0][0] if rest else None
    if positions is not None:
      box = tf.stack([tf.cast(v, tf.float64) for v in box])
      motion, motion_valid = clip_motion(ex, positions[None], box[None])
      out.update(motion=motion[0], motion_valid=motion_valid[0])
    if mode == "finetune":
      out["flip"] = video_ops.flip_decision(s_flip) if flip else tf.constant(False)
      if random_erase:
        from mgvm.data import augment

        out["erase_box"] = augment.random_erasing_boxes(
          [num_frames, image_size, image_size], s_erase, prob=random_erase
        )[0]
    return out

  def process(position, serialized):
    ex, n = parse_record(serialized, parse_fn, num_classes)
    example_seed = tf.random.experimental.stateless_fold_in(
      tf.random.experimental.stateless_fold_in(base, 1), position
    )
    s_time, s_views = tf.unstack(tf.random.experimental.stateless_split(example_seed, 2))
    indices, stride = _train_indices(
      ex["fps"],
      n,
      num_frames=window,
      temporal=temporal,
      fps_choices=fps_choices,
      frame_stride=frame_stride,
      seed=s_time,
    )
    frames = None if crop_decode else video_ops.decode_frames(ex["frames"], indices)
    positions = _positions(indices, stride, temporal) if motion else None
    views = [
      view(ex, indices, positions, frames, tf.random.experimental.stateless_fold_in(s_views, j))
      for j in range(num_sample)
    ]
    out = {key: tf.stack([v[key] for v in views]) for key in views[0]}
    out["video"] = tf.ensure_shape(
      out["video"], [num_sample, num_frames, image_size, image_size, 3]
    )
    repeat = lambda x: tf.repeat(x[None], num_sample, axis=0)  # noqa: E731
    kept = out.pop("frame_indices") if select is not None else repeat(indices)  # views' own
    return {
      **out,
      "label": repeat(ex["label"]),
      "frame_indices": kept,
      "fps": repeat(ex["fps"]),
      "stride": repeat(tf.cast(stride, tf.float32)),
      "clip_fps": repeat(_clip_fps(ex["fps"], stride)),
    }

  return train_stream(
    files,
    process,
    batch_size=batch_size,
    items_per_example=num_sample,
    seed=seed,
    process_index=process_index,
    process_count=process_count,
    host_independent=host_independent_batches,
    shuffle_buffer=shuffle_buffer,
    start_step=start_step,
    threads=threads,
  )


def training_files(
  files: str | Sequence[str], process_index: int, process_count: int, *, host_independent: bool
) -> tuple[list[str], int]:
  """(files this host reads, index of its random streams) in training: its own shards and its
  own streams, or (`host_independent`) every file and the streams every host shares."""
  if host_independent:
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index must be in [0, {process_count}), got {process_index}")
    return list_files(files), 0
  return host_files(files, process_index, process_count), process_index


def train_stream(
  files: Sequence[str],
  process: Callable,
  *,
  batch_size: int,
  seed: int,
  process_index: int,
  shuffle_buffer: int,
  start_step: int = 0,
  items_per_example: int = 1,
  threads: int = 0,
  process_count: int = 1,
  host_independent: bool = False,
) -> tf.data.Dataset:
  """The shell of every training clip data set (classification and detection): this host's
  `files` in a fresh stateless permutation per epoch → interleave → shuffle (fixed seed) →
  `process(position, serialized)` → batches of `batch_size` → prefetch.

  `process` gets the record's position in the shuffled stream (the seed of its random draws)
  and returns a dict of `items_per_example` items each (leading axis). `start_step` skips the
  records of the first `start_step` batches before they are processed, so a resumed stream
  yields exactly the batches from that step on.

  `host_independent`: `files` are every host's and the stream is the same on every host (seeded
  as host 0's); of each global step's `process_count` × `batch_size` items this host processes
  only its slice (rows `process_index` × `batch_size` onwards of the global batch, the rows
  `jax.make_array_from_process_local_data` gives it). The global batches then depend on the
  data and the seed only, not on the number of hosts; each host reads every record but decodes
  only its own.
  """
  if batch_size % items_per_example:
    raise ValueError(
      f"batch_size={batch_size} must be a multiple of the {items_per_example} items per example"
    )
  streams = 0 if host_independent else process_index
  file_seed = tf.random.experimental.stateless_fold_in(tf.constant([seed, streams], tf.int64), 0)

  def epoch_files(epoch):  # a fresh stateless permutation of the shards per epoch
    keys = tf.random.stateless_uniform(
      [len(files)], tf.random.experimental.stateless_fold_in(file_seed, epoch)
    )
    return tf.data.Dataset.from_tensor_slices(tf.gather(tf.constant(files), tf.argsort(keys)))

  ds = tf.data.Dataset.counter().flat_map(epoch_files)
  ds = ds.interleave(
    tf.data.TFRecordDataset,
    cycle_length=min(len(files), 8),
    block_length=1,
    num_parallel_calls=AUTOTUNE,
    deterministic=True,
  )
  ds = ds.shuffle(shuffle_buffer, seed=sub_seed(seed, streams, 1), reshuffle_each_iteration=False)
  local = batch_size // items_per_example  # records per step on this host
  if host_independent:
    step_records = local * process_count
    ds = ds.enumerate().skip(start_step * step_records)  # before decoding
    ds = ds.filter(lambda position, _: (position % step_records) // local == process_index)
  else:
    ds = ds.enumerate().skip(start_step * local)  # before decoding
  ds = ds.map(process, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
  ds = ds.batch(batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE, deterministic=True)
  return ds.prefetch(PREFETCH_BATCHES).with_options(options(threads))


def _eval_dataset(
  files,
  *,
  num_frames,
  image_size,
  batch_size,
  fps_choices,
  frame_stride,
  temporal,
  num_clips,
  num_crops,
  eval_batches,
  parse_fn,
  num_classes=None,
  threads=0,
  window=None,
  select=None,
  clip_motion=None,
):
  views = num_clips * num_crops
  window = window or num_frames  # frames sampled per clip (more when `select` keeps num_frames)

  def process(video_index, serialized):
    ex, n = parse_record(serialized, parse_fn, num_classes)
    indices, stride = _eval_indices(
      ex["fps"],
      n,
      num_frames=window,
      temporal=temporal,
      fps_choices=fps_choices,
      frame_stride=frame_stride,
      num_clips=num_clips,
    )  # [K, window]
    frames = video_ops.decode_frames(ex["frames"], tf.reshape(indices, [-1]))
    crops = video_ops.spatial_crops(frames, image_size, num_crops)  # [C, K*window, S, S, 3]
    crops = tf.reshape(crops, [num_crops, num_clips, window, image_size, image_size, 3])
    crops = tf.transpose(crops, [1, 0, 2, 3, 4, 5])  # view = clip * num_crops + crop
    video = video_ops.to_uint8(tf.reshape(crops, [views, window, image_size, image_size, 3]))
    frame_indices = tf.repeat(indices, num_crops, axis=0)
    extra = {}
    if clip_motion is None:
      if select is not None:
        video, frame_indices = select(video, frame_indices)
    else:
      positions = tf.repeat(_positions(indices, stride, temporal), num_crops, axis=0)
      if select is not None:
        video, frame_indices, positions = select(video, frame_indices, positions)
      shape = tf.shape(frames)
      boxes = video_ops.spatial_crop_boxes(shape[1], shape[2], image_size, num_crops)
      motion, motion_valid = clip_motion(ex, positions, tf.tile(boxes, [num_clips, 1]))
      extra = {"motion": motion, "motion_valid": motion_valid}
    per_view = lambda x: tf.fill([views], x)
    return {
      **extra,
      "video": video,
      "label": per_view(ex["label"]),
      "frame_indices": frame_indices,
      "fps": per_view(ex["fps"]),
      "stride": per_view(tf.cast(stride, tf.float32)),
      "clip_fps": per_view(_clip_fps(ex["fps"], stride)),
      "video_index": per_view(tf.cast(video_index, tf.int32)),
      "view": tf.range(views, dtype=tf.int32),
      "mask": tf.ones([views], tf.bool),
    }

  return eval_stream(
    files, process, batch_size=batch_size, eval_batches=eval_batches, threads=threads
  )


@tf.autograph.experimental.do_not_convert
def _clip_motion(ex, positions, boxes, *, size, block):
  """(`motion`, `motion_valid`) [V, ...] of V clips of the record `ex` (`video_ops.clip_motion`)."""
  return video_ops.clip_motion(
    ex["motion"], ex["motion_valid"], ex["motion_block"], positions, boxes, size, block
  )


def eval_stream(
  files: Sequence[str],
  process: Callable,
  *,
  batch_size: int,
  eval_batches: int | None = None,
  threads: int = 0,
  flat: bool = False,
) -> tf.data.Dataset:
  """The shell of every evaluation clip data set (classification and detection): one pass over
  `files` in order → `process(video_index, serialized)` → batches of `batch_size`, the last one
  zero-padded → prefetch.

  `process` returns a dict of a video's items (views, keyframes) along a leading axis, whose
  length may differ per video, with a bool `mask` (True). Padding rows are zeros with `mask`
  False. `eval_batches` pads further with fully-masked batches to exactly that many (every host
  runs the same number of batches; `eval_num_batches`) and fails if the data needs more.
  `flat=True`: `process` returns a `tf.data.Dataset` of single items instead.
  """

  def pad(batch):
    real = tf.shape(batch["mask"])[0]

    def pad_one(x):
      padded = tf.pad(x, [[0, batch_size - real]] + [[0, 0]] * (x.shape.rank - 1))
      return tf.ensure_shape(padded, [batch_size] + x.shape[1:])

    return tf.nest.map_structure(pad_one, batch)

  ds = tf.data.TFRecordDataset(files).enumerate()
  if flat:
    ds = ds.flat_map(process)
  else:
    ds = ds.map(process, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
  ds = ds.batch(batch_size, num_parallel_calls=AUTOTUNE, deterministic=True).map(pad)
  if eval_batches is not None:
    if int(eval_batches) != eval_batches or eval_batches < 1:
      raise ValueError(f"eval_batches must be an integer >= 1, got {eval_batches}")

    def check(i, item):  # one batch past the end is pulled to detect overflow
      batch, is_real = item
      ok = tf.debugging.Assert(
        tf.logical_not(is_real & (i >= eval_batches)),
        [f"eval data on this host needs more than eval_batches={eval_batches} batches"],
      )
      with tf.control_dependencies([ok]):
        return i, tf.nest.map_structure(tf.identity, batch)

    blank = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), ds.element_spec)
    ds = ds.map(lambda batch: (batch, True)).concatenate(
      tf.data.Dataset.from_tensors((blank, False)).repeat()
    )
    ds = ds.take(eval_batches + 1).enumerate().map(check)
    ds = ds.filter(lambda i, _: i < eval_batches).map(lambda _, batch: batch)
  return ds.prefetch(PREFETCH_BATCHES).with_options(options(threads))
