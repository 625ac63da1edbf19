"""Fetching an archive (md5-checked) and extracting it safely."""

from __future__ import annotations

import hashlib
import sys
import tarfile
import urllib.request
from pathlib import Path

from ..errors import DataError


def _download(url: str, dest: Path, md5: str) -> None:
    """Fetch url into dest, showing progress on stderr and checking the md5."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as out:
            total, done, shown = int(response.headers.get("Content-Length") or 0), 0, -1
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                percent = done * 100 // total if total else done >> 20
                if percent != shown:
                    unit = "%" if total else " MiB"
                    print(f"\rdownloading {url}: {percent}{unit}", end="", file=sys.stderr,
                          flush=True)
                    shown = percent
        print(file=sys.stderr)
    except OSError as e:  # URLError and socket errors are OSErrors
        part.unlink(missing_ok=True)
        raise DataError(
            f"download of {url} failed ({e}); fetch it by hand into {dest.parent}"
        ) from e
    if digest.hexdigest() != md5:
        part.unlink()
        raise DataError(
            f"{url}: md5 {digest.hexdigest()} does not match the expected {md5}; try again"
        )
    part.replace(dest)


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive, refusing absolute paths, '..', links and special files."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                name = Path(m.name)
                if name.is_absolute() or ".." in name.parts or not (m.isfile() or m.isdir()):
                    raise DataError(
                        f"{archive}: refused member {m.name!r} (absolute path, '..', link or "
                        "special file); CIFAR archives hold only plain files"
                    )
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **extra)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: not a readable tar archive ({e})") from e
