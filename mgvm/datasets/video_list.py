"""Video lists in the VideoMAE format: one `path label` per line (space or comma separated).

The label may be absent for pre-training lists, but then on every line. Blank lines and lines
starting with `#` are skipped. Paths with spaces need the comma form (`my video.mp4,3`).
Every error names the list file and the line.
"""

from __future__ import annotations

import dataclasses
import os


class VideoListError(ValueError):
  """A malformed line of a video list (the message names file and line)."""


@dataclasses.dataclass(frozen=True)
class Entry:
  path: str  # absolute, or joined with the list's root
  label: int | None  # None for unlabelled (pre-training) lists
  line: int  # 1-based line number in the list file


def _parse_line(text: str) -> tuple[str, str | None]:
  if "," in text:
    path, _, label = text.rpartition(",")
    return path.strip(), label.strip() or None
  fields = text.split()
  if len(fields) == 1:
    return fields[0], None
  if len(fields) == 2:
    return fields[0], fields[1]
  raise ValueError(
    f"expected 'path label', got {len(fields)} fields (use 'path,label' when the path has spaces)"
  )


def read_list(list_path: str, root: str = "") -> list[Entry]:
  """Entries of `list_path`; relative paths are joined with `root`."""
  entries: list[Entry] = []
  with open(list_path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  for number, raw in enumerate(lines, 1):
    text = raw.strip()
    if not text or text.startswith("#"):
      continue
    where = f"{list_path}:{number}"
    try:
      path, label_text = _parse_line(text)
    except ValueError as e:
      raise VideoListError(f"{where}: {e}: {raw!r}") from None
    if not path:
      raise VideoListError(f"{where}: empty path: {raw!r}")
    label = None
    if label_text is not None:
      try:
        label = int(label_text)
      except ValueError:
        raise VideoListError(f"{where}: label {label_text!r} is not an integer") from None
      if label < 0:
        raise VideoListError(f"{where}: label {label} is negative")
    if entries and (label is None) != (entries[0].label is None):
      first = entries[0]
      raise VideoListError(
        f"{where}: {'no label' if label is None else 'a label'} here, but line {first.line} "
        f"{'has none' if first.label is None else 'has one'}: a list is labelled on every "
        "line or on none"
      )
    entries.append(Entry(os.path.join(root, path) if root else path, label, number))
  return entries


def read_classes(path: str) -> list[str]:
  """Class names of `path`, one per line (line k = label k); trailing blank lines are ignored.

  An empty or repeated name raises `VideoListError` naming FILE:LINE.
  """
  with open(path, encoding="utf-8") as f:
    names = [line.strip() for line in f.read().splitlines()]
  while names and not names[-1]:
    names.pop()
  if not names:
    raise VideoListError(f"{path}: no class names")
  for number, name in enumerate(names, 1):
    if not name:
      raise VideoListError(f"{path}:{number}: empty class name")
    if name in names[: number - 1]:
      raise VideoListError(
        f"{path}:{number}: class {name!r} repeated (line {names.index(name) + 1})"
      )
  return names
