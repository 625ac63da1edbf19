"""The files and folders dla-nas is given and writes: reading a YAML file, checking an output
folder (and holding it), writing a file atomically (a set of files together), naming a file safely.

Each failure is one ``DlaNasError`` line that names the file or flag and what is allowed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import DlaNasError, OptionError, WriteError

# the errors of a write that the user must fix: no space or quota, no permission, a
# read-only file system, a file too big for it
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                          errno.EFBIG})


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
    output folder: when it, or the nearest part of it that exists, is a file, or no file can
    be created there."""
    path = Path(path)
    _check_nearest_folder(path, path, flag)
    return path


def check_out_file(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as a Path, refused with an ``OptionError`` naming ``flag`` when it cannot be
    written as a file: when it is a folder, or its folder cannot be an output folder."""
    path = Path(path)
    if path.is_dir():
        raise OptionError(f"{flag} {path}: a folder, not a file (give a file path)")
    _check_nearest_folder(path.parent, path, flag)
    return path


def _check_nearest_folder(folder: Path, shown: Path, flag: str) -> None:
    """Refuse ``flag shown`` when the nearest existing part of ``folder`` is a file or no file
    can be created in it (tried: a file is made there and removed)."""
    for part in (folder, *folder.parents):
        if not part.exists():
            continue
        if not part.is_dir():
            where = "it" if part == shown else str(part)
            raise OptionError(f"{flag} {shown}: {where} is a file, not a folder (give a new "
                              "or an existing folder)")
        try:
            fd, probe = tempfile.mkstemp(dir=part, prefix=".dla-nas-probe-")
        except OSError as exc:
            raise OptionError(f"{flag} {shown}: cannot write in {part} ({exc.strerror}); give "
                              "a folder you can write to") from None
        os.close(fd)
        os.unlink(probe)
        return


@contextlib.contextmanager
def folder_lock(folder: Path, flag: str = "--out") -> Iterator[None]:
    """Hold ``folder`` (it exists) for this process alone, across processes; an
    ``OptionError`` naming ``flag`` where another process holds it. The lock is on the folder
    itself, so nothing is added to it, and the system drops it when a process dies."""
    import fcntl  # POSIX only: imported where it is used

    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OptionError(f"{flag} {folder}: another dla-nas process is writing there; "
                              f"wait for it to finish, or give another {flag}") from None
        except OSError:  # a file system without locks (some network mounts): unguarded
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def write_error(path: str | Path, exc: OSError) -> WriteError:
    """The one-line error of a write to ``path`` that failed with ``exc``."""
    return WriteError(f"{path}: cannot be written ({exc.strerror or exc}); a file there before "
                      "is unchanged")


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``dest`` to write to: it replaces ``dest`` when the block
    ends without an error and is removed otherwise (an interrupt included), so ``dest`` is
    never seen half written. A full disk or a missing permission (``WRITE_ERRNOS``) raises
    ``WriteError`` naming ``dest``."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise write_error(dest, exc) from None
    # mkstemp makes the file private (0600); give it the mode open() would, so that an
    # exported model can be read by the service that deploys it
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    part = Path(tmp)
    try:
        yield part
        part.replace(dest)
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise write_error(dest, exc) from None
    finally:
        part.unlink(missing_ok=True)


def _umask() -> int:
    """This process's umask (read by setting it, so set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_file(dest: Path, data: bytes | memoryview | str) -> None:
    """Write ``data`` (text as UTF-8) to ``dest`` atomically (``atomic_path``)."""
    with atomic_path(dest) as part, open(part, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A fresh hidden folder in ``out`` to write a set of files to: when the block ends
    without an error they are moved into ``out`` (replacing files of the same names);
    otherwise none is, and ``out`` is left as it was (removed again when the block made it)."""
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=out, prefix=".staged-"))
    except OSError as exc:
        raise write_error(out, exc) from None
    try:
        try:
            yield stage
            for path in sorted(stage.iterdir()):
                path.replace(out / path.name)
        except DlaNasError as exc:  # name a file where the user will look for it
            raise type(exc)(str(exc).replace(f"{stage}{os.sep}", f"{out}{os.sep}")) from None
        except OSError as exc:  # a writer of its own (matplotlib) on a full disk
            if exc.errno not in WRITE_ERRNOS:
                raise
            name = Path(exc.filename).name if exc.filename else ""
            raise write_error(out / name, exc) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if made:
            shutil.rmtree(out, ignore_errors=True)
        raise
    stage.rmdir()


def safe_name(text: str, limit: int = 40) -> str:
    """``text`` as a file-name part: runs of anything but letters, digits, ``_.-`` become
    ``_``, cut to ``limit`` characters."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:limit]
