"""Building blocks of a DLA network: plain and residual blocks, aggregation roots, trees
and chains.

Module and attribute names follow the official DLA code (``tree1``, ``root``, ``project``,
``conv1``/``bn1`` ...), so an official checkpoint of a fan-in-2 network loads key for key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """Conv (no bias, 'same' padding) + BN, as the two modules the official code uses."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(c_out)]


def fit_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` cropped, or padded by repeating its last row and column, to ``like``'s size
    (sizes read as constants, so an ONNX export fixes them)."""
    (h, w), (m, n) = ([int(s) for s in t.shape[-2:]] for t in (x, like))
    if m > h or n > w:
        x = F.pad(x, (0, max(0, n - w), 0, max(0, m - h)), mode="replicate")
    return x[..., :m, :n]


class _ChannelsLastMaxPool(torch.autograd.Function):
    """``F.max_pool2d(x, k, k, ceil_mode=True)`` of an NCHW CPU tensor with its forward run in
    channels_last order and its backward in NCHW, the faster kernel of each: the same values
    and gradients, the pool about 2.4x faster forward and 1.6x forward and backward than
    PyTorch's NCHW CPU kernel on 64 x 16 x 64 x 64 (networks: ``benchmarks/train_throughput.py
    --fronts --eval``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int) -> torch.Tensor:
        out, where = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), [k, k], [k, k], [0, 0], [1, 1], True)
        ctx.save_for_backward(x, where)
        ctx.k = k
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, where = ctx.saved_tensors
        k = ctx.k
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), x, [k, k], [k, k], [0, 0], [1, 1], True, where.contiguous()), None


def max_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """k x k max-pool of stride k; an odd side rounds up, as a strided 3x3 conv does. An NCHW
    tensor on the CPU is pooled in channels_last order (``_ChannelsLastMaxPool`` with autograd):
    PyTorch's NCHW CPU kernel is slow for small windows. Elsewhere, while exporting and while
    compiling, PyTorch's pool as it is."""
    if (x.device.type != "cpu" or not x.is_contiguous() or torch.jit.is_tracing()
            or torch.compiler.is_compiling()):
        return F.max_pool2d(x, k, k, ceil_mode=True)
    if x.requires_grad and torch.is_grad_enabled():
        return _ChannelsLastMaxPool.apply(x, k)
    fast = x.contiguous(memory_format=torch.channels_last)
    return F.max_pool2d(fast, k, k, ceil_mode=True).contiguous()


class MaxPool(nn.Module):
    """``max_pool`` as a module (a tree's or chain's downsampling)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool(x, self.k)


class PlainBlock(nn.Module):
    """3x3 conv (stride) + BN + ReLU, no residual: a VGG or plain-CNN layer."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(c_in, c_out, 3, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))  # ``residual`` is taken and ignored


class BasicBlock(nn.Module):
    """3x3 conv (stride) + BN + ReLU -> 3x3 conv + BN -> + residual -> ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, cardinality: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(c_in, c_out, 3, stride)
        self.conv2, self.bn2 = conv_bn(c_out, c_out, 3)
        self.relu = nn.ReLU(inplace=True)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + residual)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride, grouped for ResNeXt style) -> 1x1 expand, + residual.

    ``cardinality == 1`` is the plain bottleneck (mid = out // 2); otherwise it is the
    bottleneckx of the official code (mid = out * cardinality // 32, groups = cardinality)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, cardinality: int = 1) -> None:
        super().__init__()
        mid = c_out // 2 if cardinality == 1 else c_out * cardinality // 32
        self.conv1, self.bn1 = conv_bn(c_in, mid, 1)
        self.conv2, self.bn2 = conv_bn(mid, mid, 3, stride, groups=cardinality)
        self.conv3, self.bn3 = conv_bn(mid, c_out, 1)
        self.relu = nn.ReLU(inplace=True)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + residual)


def make_block(kind: str, c_in: int, c_out: int, stride: int, cardinality: int) -> nn.Module:
    """A block of the genome's type; ``cardinality`` matters only for bottleneckx."""
    if kind == "plain":
        return PlainBlock(c_in, c_out, stride)
    if kind == "basic":
        return BasicBlock(c_in, c_out, stride)
    if kind == "bottleneck":
        return Bottleneck(c_in, c_out, stride)
    return Bottleneck(c_in, c_out, stride, cardinality)


class Root(nn.Module):
    """Aggregation node: concat -> k x k conv + BN -> (+ first input) -> ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, residual: bool) -> None:
        super().__init__()
        self.conv, self.bn = conv_bn(c_in, c_out, kernel)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = self.bn(self.conv(torch.cat(xs, 1)))
        if self.residual:
            out = out + xs[0]
        return self.relu(out)


@dataclass(frozen=True)
class StageOptions:
    """What a tree or chain takes beyond its size: the block, the first block's stride, and
    its root (``level_root``: the stage input joins it; ``extra_root_channels``: channels of
    the children its caller passes in, such as IDA edges)."""

    block: str
    cardinality: int = 1
    stride: int = 1
    level_root: bool = False
    root_kernel: int = 1
    root_residual: bool = False
    extra_root_channels: int = 0

    def root(self, channels_in: int, c_out: int) -> Root:
        return Root(channels_in, c_out, self.root_kernel, self.root_residual)


class Tree(nn.Module):
    """Hierarchical deep aggregation tree of ``depth`` levels and ``fan_in`` children per node.

    Depth 1: ``fan_in`` blocks are chained and the root aggregates their outputs, newest first.
    Depth d > 1: ``fan_in`` subtrees of depth d-1 are chained; the first ``fan_in - 1`` start
    fresh aggregations and their outputs are inherited, in order, by the last subtree's root.
    Extra inputs to the root (``children``) come after the block outputs: the stage input
    when ``level_root``, then IDA edges from earlier stages, then the inherited spine outputs.
    ``extra_root_channels`` counts the channels of children passed in by the caller.
    """

    def __init__(self, depth: int, fan_in: int, c_in: int, c_out: int,
                 opts: StageOptions) -> None:
        super().__init__()
        self.depth = depth
        self.level_root = opts.level_root
        self.node_names = [f"tree{i + 1}" for i in range(fan_in)]
        extra = opts.extra_root_channels + (c_in if opts.level_root else 0)
        for i, name in enumerate(self.node_names):
            first = i == 0
            stride = opts.stride if first else 1
            if depth == 1:
                node = make_block(opts.block, c_in if first else c_out, c_out, stride,
                                  opts.cardinality)
            else:
                inherited = extra + (fan_in - 1) * c_out if i == fan_in - 1 else 0
                node = Tree(depth - 1, fan_in, c_in if first else c_out, c_out, dataclasses.replace(
                    opts, stride=stride, level_root=False, extra_root_channels=inherited))
            self.add_module(name, node)
        self.downsample = MaxPool(opts.stride) if opts.stride > 1 else None
        # Only depth-1 nodes of residual blocks use a projected residual; the official code
        # also builds one for deeper nodes that is never used, and we leave it out.
        self.project = (nn.Sequential(*conv_bn(c_in, c_out, 1))
                        if depth == 1 and c_in != c_out and opts.block != "plain" else None)
        self.root = opts.root(fan_in * c_out + extra, c_out) if depth == 1 else None

    def forward(self, x: torch.Tensor, children: list[torch.Tensor] | None = None) -> torch.Tensor:
        children = [] if children is None else list(children)
        needs_bottom = self.level_root or self.root is not None
        bottom = self.downsample(x) if needs_bottom and self.downsample is not None else x
        if self.level_root:
            children.insert(0, bottom)
        nodes = [getattr(self, name) for name in self.node_names]
        if self.root is not None:
            residual = self.project(bottom) if self.project is not None else bottom
            outs = [nodes[0](x, residual)]
            for node in nodes[1:]:
                outs.append(node(outs[-1]))
            return self.root(outs[::-1] + children)
        for node in nodes[:-1]:
            x = node(x)
            children.append(x)
        return nodes[-1](x, children)


class Chain(nn.Module):
    """``blocks`` blocks in sequence, the first with ``stride``: a VGG or ResNet stage.

    A residual first block whose shape changes gets a strided 1x1 conv + BN shortcut (ResNet's
    projection). A root aggregates the chain's output with the stage input (``level_root``)
    and the caller's ``children`` (IDA edges); without either there is no root."""

    def __init__(self, blocks: int, c_in: int, c_out: int, opts: StageOptions) -> None:
        super().__init__()
        stride = opts.stride
        self.level_root = opts.level_root
        self.node_names = [f"block{i + 1}" for i in range(blocks)]
        for i, name in enumerate(self.node_names):
            first = i == 0
            self.add_module(name, make_block(opts.block, c_in if first else c_out, c_out,
                                             stride if first else 1, opts.cardinality))
        reshaped = stride != 1 or c_in != c_out
        self.project = (nn.Sequential(*conv_bn(c_in, c_out, 1, stride))
                        if reshaped and opts.block != "plain" else None)
        self.downsample = MaxPool(stride) if opts.level_root and stride > 1 else None
        extra = opts.extra_root_channels + (c_in if opts.level_root else 0)
        self.root = opts.root(c_out + extra, c_out) if extra else None

    def forward(self, x: torch.Tensor, children: list[torch.Tensor] | None = None) -> torch.Tensor:
        children = [] if children is None else list(children)
        if self.level_root:
            children.insert(0, self.downsample(x) if self.downsample is not None else x)
        nodes = [getattr(self, name) for name in self.node_names]
        out = nodes[0](x, self.project(x) if self.project is not None else None)
        for node in nodes[1:]:
            out = node(out)
        return self.root([out, *children]) if self.root is not None else out
