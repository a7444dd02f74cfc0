"""The coarse net's LR body as a row stream: the same weights, fed a chunk of LR rows at a time.

Why it exists: the body (``conv_first``, the RRDBs, ``conv_body``) is 32 chained 3x3
convolutions, a receptive field of 32 LR px a side, and the structure strips of a tiled image
recompute that margin (a 1024 px input computes 1.41 LR px per kept one). Streamed, each
convolution keeps the last two rows of its input from the chunk before (its "history") and runs
with no padding in height, so every row is computed once, whatever the chunk height.

Why it is not shipped: in onnxruntime the stream's row slices and concatenations, and the
layout reorders they force around every convolution, cost nearly what the margins cost. Alone,
the streamed structure pass of a 1024 px input took 0.85x the strips' time
(``benchmarks.row_stream``, shipped weights); wired into the pipeline (its own graph roles, a
rule choosing the stream by image size so that tiles stayed bit-identical), a tiled 1024 px run
was no faster within this VM's noise (coarse stage 0.60-0.69 against 0.59-0.66 s per output
Mpx, three alternating rounds). It stays here, tested, so the measurement can be rerun when the
runtime or the network changes.

Alignment: a tensor ``d`` convolutions deep lags its input by ``d`` rows (row ``i`` of its chunk
is image row ``first_row - d + i``). Where two tensors of different lags meet (a dense block's
concatenations, the residual sums), the shallower one is read from its history ``d`` rows back.
Zero padding: the full net pads every convolution's input with zeros above row 0 and below the
last row; here every conv output is multiplied by a mask that is 0 on rows outside the image, so
the histories (zero at the start) and the rows fed after the last one (zeros) act as that
padding. Within the image the arithmetic is the full net's, operation for operation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .coarse import RRDB, CoarseSR, ResidualDenseBlock


def body_lag(blocks: int) -> int:
    """Rows a body output lags its LR input: conv_first, 15 per RRDB, conv_body."""
    return 2 + 15 * blocks


class RowStream:
    """One tensor's rows: ``depth`` rows kept from earlier chunks, then this chunk's rows."""

    def __init__(self, history: torch.Tensor, chunk: torch.Tensor) -> None:
        self.depth = history.shape[2]  # static: the history inputs have fixed heights
        self.rows = torch.cat([history, chunk], dim=2) if self.depth else chunk

    def at(self, delay: int, extra: int = 0) -> torch.Tensor:
        """The chunk's rows ``delay`` rows back, with ``extra`` earlier rows before them (a 3x3
        convolution reads 2)."""
        start = self.depth - delay - extra
        if start < 0:
            raise ValueError(f"a history of {self.depth} rows cannot go {delay + extra} back")
        return self.rows[:, :, start:] if delay == 0 else self.rows[:, :, start:-delay]

    def history(self) -> torch.Tensor:
        """The last ``depth`` rows: the next chunk's history."""
        return self.rows[:, :, self.rows.shape[2] - self.depth :]


class Histories:
    """The stream's state: histories read in a fixed order and written back in the same order.

    Without incoming tensors it records the layout (channels, depth) instead, which is how the
    exporter and the runtime learn the state inputs' shapes."""

    def __init__(self, incoming: list[torch.Tensor] | None) -> None:
        self.incoming, self.taken = incoming, 0
        self.outgoing: list[torch.Tensor] = []
        self.layout: list[tuple[int, int]] = []

    def stream(self, chunk: torch.Tensor, depth: int) -> RowStream:
        if self.incoming is None:
            history = chunk.new_zeros(chunk.shape[0], chunk.shape[1], depth, chunk.shape[3])
        else:
            history = self.incoming[self.taken]
            self.taken += 1
        self.layout.append((chunk.shape[1], depth))
        stream = RowStream(history, chunk)
        self.outgoing.append(stream.history())
        return stream


class RowMask:
    """(1, 1, R, 1) masks that are 1 on chunk rows inside the image, for a tensor of a given lag."""

    def __init__(self, first_row: torch.Tensor, height: torch.Tensor, rows: int | torch.Tensor) -> None:
        self.index = torch.arange(rows, dtype=torch.int64).reshape(1, 1, -1, 1) + first_row
        self.height = height

    def __call__(self, x: torch.Tensor, lag: int) -> torch.Tensor:
        row = self.index - lag
        inside = (row >= 0) & (row < self.height)
        return x * inside.to(x.dtype)


def conv_rows(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` (3x3, padding 1) on rows that already carry the row above and below: no padding
    in height, zero padding in width as before."""
    return F.conv2d(x, conv.weight, conv.bias, padding=(0, 1))


def dense_block_rows(
    block: ResidualDenseBlock, x: torch.Tensor, lag: int, histories: Histories, mask: RowMask
) -> torch.Tensor:
    """``ResidualDenseBlock.forward`` on a chunk ``lag`` rows behind the input: returns the chunk
    5 rows further behind. Conv ``i`` reads feature ``j`` (``j <= i``) ``i - j`` rows back, plus the
    two rows above."""
    streams = [histories.stream(x, 6)]  # conv 4 reads x 4 rows back + 2; the residual 5 back
    out = x
    for i, conv in enumerate(block.convs):
        inputs = torch.cat([s.at(i - j, 2) for j, s in enumerate(streams)], dim=1)
        out = conv_rows(conv, inputs)
        if i < 4:
            feature = mask(block.act(out), lag + i + 1)
            streams.append(histories.stream(feature, 5 - i))  # read up to 4 - (i + 1) back + 2
    out = mask(out, lag + 5)
    return streams[0].at(5) + 0.2 * out


def rrdb_rows(block: RRDB, x: torch.Tensor, lag: int, histories: Histories, mask: RowMask) -> torch.Tensor:
    """``RRDB.forward`` on a chunk: 15 rows further behind."""
    residual = histories.stream(x, 15)
    y = x
    for i, dense in enumerate(block.blocks):
        y = dense_block_rows(dense, y, lag + 5 * i, histories, mask)
    return residual.at(15) + 0.2 * y


class CoarseBodyRows(nn.Module):
    """``(lr_rows, first_row, height, *histories) -> (features, *histories)``: the features
    ``CoarseSR.body_features`` gives for image rows ``first_row - lag ..`` (``lag = body_lag``),
    one chunk of LR rows at a time."""

    def __init__(self, coarse: CoarseSR) -> None:
        super().__init__()
        self.coarse = coarse
        self.lag = body_lag(len(coarse.body))

    def forward(
        self, lr_rows: torch.Tensor, first_row: torch.Tensor, height: torch.Tensor, *incoming: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        out, histories = self.run(lr_rows, first_row, height, Histories(list(incoming)))
        return (out, *histories.outgoing)

    def run(
        self, lr_rows: torch.Tensor, first_row: torch.Tensor, height: torch.Tensor, histories: Histories
    ) -> tuple[torch.Tensor, Histories]:
        c = self.coarse
        mask = RowMask(first_row, height, lr_rows.shape[2])
        feat = mask(conv_rows(c.conv_first, histories.stream(lr_rows, 2).at(0, 2)), 1)
        skip = histories.stream(feat, self.lag - 1)
        y = feat
        for i, block in enumerate(c.body):
            y = rrdb_rows(block, y, 1 + 15 * i, histories, mask)
        y = mask(conv_rows(c.conv_body, histories.stream(y, 2).at(0, 2)), self.lag)
        return skip.at(self.lag - 1) + y, histories

    def layout(self, width: int = 8) -> list[tuple[int, int]]:
        """(channels, rows) of every history input, in order."""
        lr = torch.zeros(1, 3, 1, width)
        zero = torch.zeros(1, dtype=torch.int64)
        with torch.no_grad():
            _, histories = self.run(lr, zero, zero + 1, Histories(None))
        return histories.layout


def stream_body(body: CoarseBodyRows, lr: torch.Tensor, chunk: int) -> torch.Tensor:
    """The whole image's body features through the stream, ``chunk`` rows at a time (tests)."""
    h = lr.shape[2]
    first = torch.zeros(1, dtype=torch.int64)
    height = torch.tensor([h], dtype=torch.int64)
    histories = [torch.zeros(1, c, d, lr.shape[3]) for c, d in body.layout()]
    rows = []
    for fed in range(0, h + body.lag, chunk):
        piece = lr[:, :, fed : fed + chunk]
        piece = F.pad(piece, (0, 0, 0, chunk - piece.shape[2]))  # zero rows past the image
        out, *histories = body(piece, first + fed, height, *histories)
        rows.append(out)
    return torch.cat(rows, dim=2)[:, :, body.lag : body.lag + h]
