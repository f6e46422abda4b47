"""fastmmd export's rules alone: the padding rule the exports share and the int8 storage's checks.
Exports themselves: tests/integration/test_export.py."""

from __future__ import annotations

import pytest
import torch

from fastmmd.model.networks import MIN_SIZE, padded_size, size_padding


def test_int8_storage_refuses_inconsistent_scales():
    from fastmmd.model.storage import dequantize_state

    q = torch.randint(-127, 128, (4, 3, 3, 3), dtype=torch.int8)
    good = {"c.weight_int8": q, "c.weight_scale": torch.full((4, 1, 1, 1), 0.01), "c.bias": torch.zeros(4)}
    assert torch.equal(dequantize_state(good)["c.weight"], q.float() * 0.01)
    for bad in ({"c.weight_int8": q}, {**good, "c.weight_scale": torch.full((3, 1, 1, 1), 0.01)},
                {**good, "c.weight_scale": torch.full((4, 1, 1, 1), float("nan"))},
                {**good, "c.weight_int8": q.float()}, {**good, "c.weight": q.float()}):
        with pytest.raises(ValueError):
            dequantize_state(bad)


def test_one_padding_rule():
    """The network pads to a multiple of 4, at least 8 px; the branch-free export padding agrees from 8 px up."""
    assert [padded_size(n) for n in (1, 7, 8, 9, 12, 13, 16)] == [8, 8, 8, 12, 12, 16, 16]
    assert all(n + size_padding(n) == padded_size(n) for n in range(MIN_SIZE, 200))
