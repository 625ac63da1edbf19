"""The files and folders dla-nas is given and writes: reading a YAML file, checking an output
folder, writing a file atomically, naming a file safely.

Each failure is one ``DlaNasError`` line that names the file or flag and what is allowed.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import DlaNasError, OptionError


def read_yaml(path: Path, error: type[DlaNasError]) -> Any:
    """The YAML data of ``path``; a file that cannot be read, is not UTF-8 or is not valid YAML
    raises ``error`` with one line that names the file (and the line and column)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                    f"{exc.start}); save it as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML{_yaml_problem(exc)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what a YAML error is, as one line: `` at line L, column C: problem``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if mark is not None and problem:
        return f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f": {' '.join(str(exc).split())}"


def check_out_folder(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as a Path, refused with an ``OptionError`` naming ``flag`` when it cannot be an
    output folder: when it, or the nearest part of it that exists, is a file."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "it" if part == path else str(part)
                raise OptionError(f"{flag} {path}: {where} is a file, not a folder (give a new "
                                  "or an existing folder)")
            break
    return path


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``dest`` to write to: it replaces ``dest`` when the block
    ends without an error and is removed otherwise (an interrupt included), so ``dest`` is
    never seen half written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    part = Path(tmp)
    try:
        yield part
        part.replace(dest)
    finally:
        part.unlink(missing_ok=True)


def safe_name(text: str, limit: int = 40) -> str:
    """``text`` as a file-name part: runs of anything but letters, digits, ``_.-`` become
    ``_``, cut to ``limit`` characters."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:limit]
