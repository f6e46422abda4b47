"""Instance-norm statistics taken from somewhere else than the image being stylized.

Instance normalisation (Ulyanov et al. 2016) normalises every feature map of a network by its own
mean and variance over the image. That is what makes a feed-forward style network work on any
photo, but it ties the output to the image as a whole: a tile of an image, or a frame of a video,
normalised by its own statistics comes out with slightly different contrast and colour than its
neighbours (seams between tiles; brightness that pumps as objects enter and leave the frame).
Three ways out, all hooking an eager network's norm layers (a ``.ckpt``, ``.pt`` or ``.pt2`` runs
as one; an ONNX graph cannot be hooked):

* :func:`fixed_norm_statistics` (a context manager): every norm layer uses given (mean, var), e.g.
  a whole image's statistics for each of its tiles (:func:`fastmmd.model.tiling.global_norm_statistics`)
  or a clip's for each of its frames.
* :func:`pooled_norm_statistics` (a function) computes such statistics over several pieces (tiles,
  sampled frames) as if they were one image: layer k's input depends on layers < k being
  normalised the same way, so it takes one pass over the pieces per norm layer, each stopped at
  that layer.
* :func:`running_norm_statistics` (a context manager): frames in order, each normalised by an
  exponential moving average of the statistics of the frames so far,
  ``m_t = a m_{t-1} + (1 - a) mean_t``, ``q_t = a q_{t-1} + (1 - a) E_t[x^2]``, ``var_t = q_t - m_t^2``,
  so the statistics follow a scene slowly instead of jumping with every frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

Stats = list[tuple[Tensor, Tensor]]  # per norm layer, in call order: (mean, var), (B or 1, C, 1, 1)


class _Stop(Exception):
    """Ends a forward pass once the layer being measured has been reached."""


def norm_layers(net: nn.Module) -> list[nn.InstanceNorm2d]:
    """The instance norms of ``net`` in module order (the order a TransformerNet calls them)."""
    return [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]


@contextlib.contextmanager
def _hooked(layers: list[nn.InstanceNorm2d], hook: Callable[..., Tensor | None]) -> Iterator[None]:
    """``hook`` on every layer's output within the block."""
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def normalize(module: nn.InstanceNorm2d, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """``module``'s output for input ``x`` had its statistics been ``mean`` and ``var``."""
    mean, var = mean.to(device=x.device, dtype=x.dtype), var.to(device=x.device, dtype=x.dtype)
    y = (x - mean) * torch.rsqrt(var + module.eps)
    if module.affine:
        y = y * module.weight[:, None, None] + module.bias[:, None, None]
    return y


@contextlib.contextmanager
def fixed_norm_statistics(net: nn.Module, stats: Stats, measure: Callable[[Tensor], None] | None = None) -> Iterator[None]:
    """Within the block, ``net``'s instance norms use ``stats`` in call order; the next one (index
    ``len(stats)``) is passed to ``measure`` and the forward stops (:func:`pooled_norm_statistics`)."""
    layers = norm_layers(net)
    calls = [0]  # norm layers called so far; every full forward calls each once, in order

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
        k = calls[0] % len(layers)
        calls[0] += 1
        if k < len(stats):
            return normalize(module, inputs[0], *stats[k])
        if measure is not None:
            measure(inputs[0])
            raise _Stop
        return None

    with _hooked(layers, hook):
        yield


def pooled_norm_statistics(net: nn.Module, run: Callable[[Tensor], object], pieces: Sequence[Tensor],
                           region: Callable[[int, Tensor], Tensor] | None = None) -> Stats:
    """Mean and variance (B, C, 1, 1) of every instance-norm input of ``net`` over all ``pieces`` at once.

    Args:
        net: the eager network whose ``nn.InstanceNorm2d`` layers are measured.
        run: calls ``net`` on a piece (moves it to the device, sets precision).
        pieces: batches (B, 3, h, w) pooled together per sample b (tiles of an image, frames of a
            clip stacked as B = 1). Sizes may differ.
        region: ``(piece index, layer input) -> the part of it that counts`` (default: all of it).
    """
    stats: Stats = []
    for _ in range(len(norm_layers(net))):
        total: list = [0.0, 0.0, 0]  # sum, sum of squares, count

        for index, piece in enumerate(pieces):
            def measure(x: Tensor, index: int = index) -> None:
                part = (region(index, x) if region is not None else x).double().cpu()
                total[0] = total[0] + part.sum((2, 3))
                total[1] = total[1] + part.square().sum((2, 3))
                total[2] += part.shape[-1] * part.shape[-2]

            with fixed_norm_statistics(net, stats, measure), contextlib.suppress(_Stop):
                run(piece)
        mean = total[0] / total[2]
        var = (total[1] / total[2] - mean.square()).clamp_min(0)
        stats.append((mean.float()[:, :, None, None], var.float()[:, :, None, None]))
    return stats


@contextlib.contextmanager
def running_norm_statistics(net: nn.Module, momentum: float) -> Iterator[None]:
    """Within the block, successive images (frames in order: within a batch, then across calls) are
    normalised by the moving average of the statistics so far (``momentum`` = a in the module
    docstring; 0 = each frame its own statistics). The first frame uses its own."""
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), not {momentum}")
    layers = norm_layers(net)
    state: dict[int, tuple[Tensor, Tensor]] = {}

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        x = inputs[0]
        mean, square = x.float().mean((2, 3)), x.float().square().mean((2, 3))  # (B, C)
        key = id(module)
        m, q = state.get(key, (mean[0], square[0]))
        means, variances = [], []
        for b in range(x.shape[0]):
            m = momentum * m + (1 - momentum) * mean[b]
            q = momentum * q + (1 - momentum) * square[b]
            means.append(m)
            variances.append((q - m.square()).clamp_min(0))
        state[key] = (m, q)
        return normalize(module, x, torch.stack(means)[:, :, None, None], torch.stack(variances)[:, :, None, None])

    with _hooked(layers, hook):
        yield
