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
