"""Where pretrained weights come from, and the local file each source resolves to.

A source is written as one string (``--pretrained SOURCE``, ``proxy.pretrained``):

- ``official`` or ``official:NAME``: the DLA authors' ImageNet files (``dla34-ba72cf86.pth``:
  the 8 hex digits are the start of the file's sha256, checked on every use);
- ``timm`` or ``timm:NAME``: timm's ``NAME.in1k`` safetensors on the Hugging Face hub, checked
  against the sha256 the hub sends with its redirect (``X-Linked-Etag``);
- a bare official name (``dla34``): the same as ``official:dla34``;
- an ``http(s)://`` or ``file://`` URL, checked against ``#sha256=HEX`` at its end when given,
  else against a sha256 ETag when the server sends one;
- a path to a local file.

A file named as an official one (``dla34-ba72cf86.pth``), wherever it comes from, is checked
against the hash in its name.

Downloads land in the cache (``$DLA_NAS_CACHE/weights``, by default
``~/.cache/dla-nas/weights``) and are reused from there, so a machine without internet uses
files copied into it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import urlparse

from ..download import fetch
from ..errors import WeightsError
from ..files import atomic_path

OFFICIAL_URL = "http://dl.yf.io/dla/models/imagenet/{file}"
# the files of the official code's dataset.py; the hex is the start of each file's sha256
OFFICIAL_FILES = {
    "dla34": "dla34-ba72cf86.pth", "dla46_c": "dla46_c-2bfd52c3.pth",
    "dla46x_c": "dla46x_c-d761bae7.pth", "dla60x_c": "dla60x_c-b870c45c.pth",
    "dla60": "dla60-24839fc4.pth", "dla60x": "dla60x-d15cacda.pth",
    "dla102": "dla102-d94d9790.pth", "dla102x": "dla102x-ad62be81.pth",
    "dla102x2": "dla102x2-262837b6.pth", "dla169": "dla169-0914e092.pth",
}
TIMM_URL = "https://huggingface.co/timm/{name}.in1k/resolve/main/model.safetensors"
SOURCE_FORMS = "official, official:NAME, timm, timm:NAME, an official name, a URL or a file"
_OFFICIAL_NAME = re.compile(r"(dla\w+)-([0-9a-f]{8})\.pth")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class WeightsSource:
    """One source of pretrained weights: its kind and where (a network name, URL or path)."""

    kind: str
    location: str

    @property
    def label(self) -> str:
        """How records and messages name the source: ``official:dla34``, a URL or a path."""
        return f"{self.kind}:{self.location}" if self.kind in ("official", "timm") else self.location


def parse_source(text: str, network: str = "") -> WeightsSource:
    """The source that ``text`` names; ``network`` (a zoo name such as ``dla34_cifar``) fills in
    a bare ``official`` or ``timm``. Raise ``WeightsError`` naming what is allowed."""
    text = str(text).strip()
    kind, _, name = text.partition(":")
    if kind in ("official", "timm") and not text.startswith(("official://", "timm://")):
        name = name or network.removesuffix("_cifar")
        if name not in OFFICIAL_FILES:
            given = f"{name!r}" if name else "no network name"
            raise WeightsError(f"pretrained: {kind}: {given} has no ImageNet weights (allowed: "
                               f"{', '.join(OFFICIAL_FILES)}); name them, e.g. {kind}:dla34")
        return WeightsSource(kind, name)
    if urlparse(text).scheme in ("http", "https", "file"):
        return WeightsSource("url", text)
    if text in OFFICIAL_FILES and not Path(text).exists():
        return WeightsSource("official", text)
    if not Path(text).is_file():
        raise WeightsError(f"pretrained: {text!r}: no such file (allowed: {SOURCE_FORMS})")
    return WeightsSource("path", text)


def cache_dir() -> Path:
    """Where downloaded weights are kept: ``$DLA_NAS_CACHE/weights``, by default
    ``~/.cache/dla-nas/weights``."""
    root = os.environ.get("DLA_NAS_CACHE") or Path.home() / ".cache" / "dla-nas"
    return Path(root) / "weights"


def source_url(source: WeightsSource) -> str | None:
    """The URL a source is downloaded from (None for a local file)."""
    if source.kind == "official":
        return OFFICIAL_URL.format(file=OFFICIAL_FILES[source.location])
    if source.kind == "timm":
        return TIMM_URL.format(name=source.location)
    return source.location if source.kind == "url" else None


def cached_path(source: WeightsSource) -> Path:
    """The file a source resolves to: the local path itself, or its place in the cache."""
    if source.kind == "path":
        return Path(source.location)
    if source.kind == "official":
        return cache_dir() / OFFICIAL_FILES[source.location]
    if source.kind == "timm":
        return cache_dir() / "timm" / f"{source.location}.in1k.safetensors"
    url = source.location
    name = Path(urlparse(url).path).name or "weights"
    return cache_dir() / "url" / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"


def name_hash(path: Path) -> str | None:
    """The sha256 prefix of a file named as an official one (``dla34-ba72cf86.pth``)."""
    found = _OFFICIAL_NAME.fullmatch(path.name)
    return found.group(2) if found and found.group(1) in OFFICIAL_FILES else None


def _etag_sha256(headers: list[Message]) -> str | None:
    """The sha256 a server gives for the file: the Hugging Face hub's ``X-Linked-Etag`` on a
    redirect, else an ETag that is a sha256."""
    for key in ("X-Linked-Etag", "ETag"):
        for h in headers:
            tag = (h.get(key) or "").removeprefix("W/").strip('"').lower()
            if _SHA256.fullmatch(tag):
                return tag
    return None


@dataclass(frozen=True)
class WeightsFile:
    """A resolved source: the local file, its sha256 and whether that was checked."""

    source: WeightsSource
    path: Path
    sha256: str
    checked: bool


def weights_file(source: WeightsSource) -> WeightsFile:
    """The local file of ``source``, downloaded into the cache if it is not there yet.

    A file named as an official one is checked against the hash in its name on every use; a
    download against that, a URL's ``#sha256=``, or else the server's sha256 ETag when there
    is one. A mismatch raises ``WeightsError``, and so does a download that fails, with a
    line that says what to fetch and where to put it."""
    path = cached_path(source)
    url = source_url(source)
    expected = name_hash(Path(urlparse(url).path) if url else path)
    if url is not None and "#sha256=" in url:
        url, _, expected = url.partition("#sha256=")
    known = path.with_name(path.name + ".sha256")  # what a checked download was checked against
    if path.is_file():
        expected = expected or (known.read_text().strip() if known.is_file() else None)
        digest = _sha256(path)
        if expected and not digest.startswith(expected.lower()):
            raise WeightsError(f"{path}: sha256 {digest} does not match the expected "
                               f"{expected}; the file is corrupt or not the one named (delete "
                               "it and fetch it again)")
        return WeightsFile(source, path, digest, expected is not None)
    if url is None:
        raise WeightsError(f"pretrained: {path}: no such file")
    hint = f"without internet, download {url} elsewhere and copy it to {path}"
    digest, checked = fetch(url, path, WeightsError, expected or _etag_sha256, hint=hint)
    if checked is not None:
        with atomic_path(known) as part:  # workers may fetch the same file
            part.write_text(checked + "\n")
    return WeightsFile(source, path, digest, checked is not None)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
