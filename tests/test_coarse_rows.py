"""The row stream of the coarse body (``export.networks.coarse_rows``) computes the body's result.

It is not shipped (``benchmarks.row_stream`` says why), but its measurement is only worth
rerunning while the stream is still the same function as the body it replaces.
"""

from __future__ import annotations

import pytest
import torch

from export.networks.coarse_rows import CoarseBodyRows, RowStream, body_lag, stream_body


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_streamed_rows_equal_the_whole_body_for_any_chunk_height(tiny_torch_model, chunk: int) -> None:
    coarse = tiny_torch_model.coarse
    torch.manual_seed(3)
    lr = torch.rand(1, 3, 23, 19)
    with torch.no_grad():
        whole = coarse.body_features(lr)
        streamed = stream_body(CoarseBodyRows(coarse).eval(), lr, chunk)
    assert streamed.shape == whole.shape
    assert torch.allclose(streamed, whole, atol=1e-5), float((streamed - whole).abs().max())


def test_the_stream_lags_one_row_per_convolution(tiny_torch_model) -> None:
    blocks = len(tiny_torch_model.coarse.body)
    assert CoarseBodyRows(tiny_torch_model.coarse).lag == body_lag(blocks) == 2 + 15 * blocks


def test_split_coarse_net_is_the_coarse_net(tiny_torch_model) -> None:
    coarse = tiny_torch_model.coarse
    lr = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert torch.equal(coarse(lr), coarse.upsample(lr, coarse.body_features(lr)))


def test_a_history_cannot_be_read_further_back_than_it_reaches() -> None:
    stream = RowStream(torch.zeros(1, 2, 3, 4), torch.ones(1, 2, 5, 4))
    assert torch.equal(stream.at(0), torch.ones(1, 2, 5, 4))
    assert stream.at(3).shape[2] == 5 and float(stream.at(3)[0, 0, :3].sum()) == 0.0
    with pytest.raises(ValueError, match="cannot go 4 back"):
        stream.at(2, 2)
