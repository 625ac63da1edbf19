"""Reading a weights file safely into a flat ``{name: tensor}`` state dict.

safetensors files are read as tensors only; anything else goes through
``torch.load(weights_only=True)``, which refuses pickled code instead of running it. The
layouts in use are unwrapped: a bare state dict (official, timm), ``{"state_dict": ...}``
(dla-nas checkpoints, many training scripts), ``{"model": ...}``, and ``module.`` prefixes
left by ``DataParallel``.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import WeightsError
from ..files import write_file

_WRAPPERS = ("state_dict", "model")


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` holds safetensors: 8 bytes of header length, then a JSON header."""
    with path.open("rb") as f:
        head = f.read(9)
    return path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, keyed by module path; ``WeightsError`` names the file
    when it cannot be read or holds no tensors."""
    try:
        if is_safetensors(path):
            from safetensors.torch import load_file

            raw = load_file(str(path), device="cpu")
        else:
            raw = load_tensors_only(path)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except pickle.UnpicklingError as exc:
        found = refused_global(exc)
        what = f" ({found})" if found else ""
        raise WeightsError(f"{path}: refused: it holds Python code or objects{what}, which "
                           "torch.load(weights_only=True) does not run; weights must be "
                           "tensors (a state dict) or safetensors") from None
    except Exception as exc:  # safetensors and torch raise their own errors for bad files
        raise WeightsError(f"{path}: not a readable weights file ({exc.__class__.__name__}: "
                           f"{str(exc)[:120]})") from None
    state = _unwrap(raw)
    if not state:
        raise WeightsError(f"{path}: holds no tensors (a state dict of name -> tensor, or a "
                           "dict with one under 'state_dict' or 'model')")
    bad = first_non_finite(state)
    if bad is not None:
        raise WeightsError(f"{path}: tensor {bad} holds NaN or infinite values; weights must "
                           "be finite (the file is damaged, or its training diverged)")
    return state


def first_non_finite(state: Mapping[str, object]) -> str | None:
    """The name of the first floating-point tensor of ``state`` with a NaN or an infinite
    value, or None: such weights load "whole" yet make every output NaN."""
    return next((name for name, v in state.items() if isinstance(v, torch.Tensor)
                 and v.is_floating_point() and not bool(torch.isfinite(v).all())), None)


def load_tensors_only(path: str | Path) -> object:
    """``torch.load(weights_only=True)`` on the CPU. torch's note on an unusual pickle
    protocol is silenced: the refusal it precedes is reported as one line by the caller."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(path, map_location="cpu", weights_only=True)


def refused_global(exc: pickle.UnpicklingError) -> str | None:
    """The Python object a ``weights_only`` load refused to import (``os.system``), if named."""
    found = re.search(r"GLOBAL (\S+)", str(exc))
    return found.group(1) if found else None


def _unwrap(raw: object) -> dict[str, torch.Tensor]:
    """The flat state dict inside a loaded object, ``module.`` prefixes removed."""
    if isinstance(raw, dict):
        for key in _WRAPPERS:
            if isinstance(raw.get(key), dict):
                raw = raw[key]
                break
    if not isinstance(raw, dict):
        return {}
    return {str(k).removeprefix("module."): v for k, v in raw.items()
            if isinstance(v, torch.Tensor)}


def write_state_dict(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Write a state dict as safetensors, atomically (``read_state_dict`` reads it back)."""
    from safetensors.torch import save

    write_file(path, save({k: v.detach().cpu().contiguous() for k, v in state.items()}))
