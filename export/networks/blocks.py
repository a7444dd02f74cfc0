"""Building blocks shared by the networks.

Everything here exports to plain ONNX ops (Conv, Add, Reshape, Transpose, DepthToSpace) with
dynamic height and width: no unfold/fold (Col2Im needs opset 18) and no data-dependent shapes.
"""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """Pre-activation residual block; keeps the signal path linear so deep stacks train quickly."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(ch, ch)
        self.conv2 = conv3x3(ch, ch)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


def space_to_depth(x: torch.Tensor, factor: int) -> torch.Tensor:
    return nn.functional.pixel_unshuffle(x, factor)


def depth_to_space(x: torch.Tensor, factor: int) -> torch.Tensor:
    return nn.functional.pixel_shuffle(x, factor)


def conv_of_unshuffled(x: torch.Tensor, conv: nn.Conv2d, factor: int) -> torch.Tensor:
    """``conv(space_to_depth(x, factor))`` as one strided convolution on ``x`` itself.

    The same weights, rearranged (channel ``c*f*f + sy*f + sx`` at tap ``(ky, kx)`` becomes tap
    ``(ky*f + sy, kx*f + sx)`` of channel ``c``), and the same zero padding: exact to float
    rounding. onnxruntime spent as long on the unshuffle's 6-D transpose as on the convolution.
    """
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError("conv_of_unshuffled needs a plain stride-1 convolution")
    f = factor
    out_ch, in_ch, kh, kw = conv.weight.shape
    weight = conv.weight.reshape(out_ch, in_ch // (f * f), f, f, kh, kw).permute(0, 1, 4, 2, 5, 3)
    weight = weight.reshape(out_ch, in_ch // (f * f), kh * f, kw * f)
    pad_h, pad_w = conv.padding  # type: ignore[misc]
    return nn.functional.conv2d(x, weight, conv.bias, stride=f, padding=(pad_h * f, pad_w * f))
