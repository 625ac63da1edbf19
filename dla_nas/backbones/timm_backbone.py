"""A timm network as a backbone, its taps from timm's own ``feature_info``."""

from __future__ import annotations

from torch import nn

from ..errors import BackboneError


def timm_features(name: str, pretrained: bool = False, in_chans: int = 3
                  ) -> tuple[nn.Module, list[str]]:
    """``timm.create_model(name, pretrained=pretrained, in_chans=in_chans)`` and the modules
    its ``feature_info`` names at stride 2 and deeper (as ``efficientnet_lite0``'s).

    Not ``features_only=True``: that model renames the modules it keeps (``blocks.1`` becomes
    ``blocks_1``), so ``feature_info`` no longer names them; the whole network under
    ``FeatureTaps`` stops after the deepest tap anyway."""
    try:
        import timm
    except Exception as e:  # a torchvision built for CUDA raises a RuntimeError, not ImportError
        first = (str(e).splitlines() or [""])[0]
        raise BackboneError(f"timm cannot be imported here ({type(e).__name__}: {first})"
                            ) from None
    model = timm.create_model(name, pretrained=pretrained, in_chans=in_chans)
    info = getattr(model, "feature_info", None)
    if not info:
        raise BackboneError(f"timm model {name!r} has no feature_info; name its taps yourself")
    return model, [d["module"] for d in info if d["reduction"] >= 2]
