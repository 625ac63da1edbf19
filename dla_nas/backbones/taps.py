"""Any ``nn.Module`` as a backbone: the outputs of named modules (its taps) are its levels."""

from __future__ import annotations

import contextlib
import difflib
from typing import Iterator

import torch
from torch import nn

from ..errors import BackboneError


class _Stop(Exception):
    """Raised by the deepest tap's hook: what runs after it (a classifier) is not needed."""


class Skipped(nn.Module):
    """Stands in for a module that the taps never reach: passes its input on."""

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return x


class FeatureTaps(nn.Module):
    """``model`` seen through forward hooks on the modules named ``taps`` (dotted names, as in
    ``model.named_modules()``, shallow to deep); ``forward`` returns their outputs.

    ``feature_info`` (as in timm: ``module``, ``num_chs``, ``reduction``) comes from one dry
    run on an ``in_chans`` x ``input_size`` x ``input_size`` input. A tap's output is what its
    module returned; an in-place op after it (``ReLU(inplace=True)``) changes it too.

    The modules that the pass never reaches (what comes after the deepest tap: later stages,
    the classifier) are replaced in ``model`` by ``Skipped``, so that they are neither
    trained, counted nor exported. The pass stops at the deepest tap, except while it is
    traced (fvcore's MAC count, ONNX export): a trace cannot leave a module halfway, so the
    rest of ``model``'s forward runs through the skipped modules, and its output is unused.
    """

    def __init__(self, model: nn.Module, taps: list[str], in_chans: int = 3,
                 input_size: int = 64) -> None:
        super().__init__()
        check_names(model, taps)
        self.model = model
        self.taps = list(taps)
        with self._calls() as ran:
            self.feature_info = self._dry_run(in_chans, input_size)
        self._prune(ran)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [out for _, out in self._run(x)]

    def _run(self, x: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """(tap index, output) in the order the hooks fired; the pass stops at the last tap."""
        fired: list[tuple[int, torch.Tensor]] = []
        last = len(self.taps) - 1

        def hook(i: int):
            def keep(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
                fired.append((i, output))
                if i == last and not torch.jit.is_tracing():
                    raise _Stop
            return keep

        # hooks live for one pass only, so the user's model is left as it was
        handles = [self.model.get_submodule(name).register_forward_hook(hook(i))
                   for i, name in enumerate(self.taps)]
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return fired

    @contextlib.contextmanager
    def _calls(self) -> Iterator[set[str]]:
        """A set that gathers the names of the modules of ``self.model`` called within."""
        called: set[str] = set()
        handles = [m.register_forward_pre_hook(lambda *_, name=name: called.add(name))
                   for name, m in self.model.named_modules() if name]
        try:
            yield called
        finally:
            for h in handles:
                h.remove()

    def _prune(self, ran: set[str]) -> None:
        """Each outermost module that neither ran (``ran``) nor holds one that ran (a
        ``ModuleList`` is iterated, not called) becomes ``Skipped`` in its parent; a list
        keeps its length, so index-dependent code such as drop-path rates is unchanged."""
        ran = ran | {name.rsplit(".", k)[0] for name in ran for k in range(1, name.count(".") + 1)}
        for name, _ in list(self.model.named_modules()):
            parent, _, leaf = name.rpartition(".")
            if name and name not in ran and (not parent or parent in ran):
                owner = self.model.get_submodule(parent) if parent else self.model
                setattr(owner, leaf, Skipped())

    def _dry_run(self, in_chans: int, input_size: int) -> list[dict]:
        """Channels and reduction of each tap; checks they fire once each, in order."""
        like = next(self.model.parameters(), torch.zeros(()))  # the model's device and dtype
        training = self.model.training
        self.model.eval()  # no BN statistics change, and batch 1 is allowed
        try:
            with torch.no_grad():
                fired = self._run(like.new_zeros(1, in_chans, input_size, input_size))
        finally:
            self.model.train(training)
        order = [self.taps[i] for i, _ in fired]
        if order != self.taps:
            raise BackboneError(f"taps {self.taps} must each run once, in forward order; "
                                f"the forward pass ran {order}")
        info = []
        for name, (_, out) in zip(self.taps, fired):
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise BackboneError(f"tap {name!r} returns {got}, not an (N, C, H, W) tensor")
            info.append(dict(module=name, num_chs=out.shape[1],
                             reduction=round(input_size / out.shape[-2])))
        return info


def check_names(model: nn.Module, taps: list[str]) -> None:
    """Each tap names a module of ``model``, once; otherwise a ``BackboneError`` naming it."""
    if not taps:
        raise BackboneError("taps: none given (a list of module names, shallow to deep)")
    names = [n for n, _ in model.named_modules(remove_duplicate=False) if n]
    known = set(names)
    for name in taps:
        if name not in known:
            close = difflib.get_close_matches(name, names, n=4) or names[:4]
            raise BackboneError(f"tap {name!r} is not a module of {type(model).__name__} "
                                f"(close: {', '.join(close)})")
        if taps.count(name) > 1:
            raise BackboneError(f"tap {name!r} is listed {taps.count(name)} times (once each)")

