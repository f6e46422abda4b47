"""How TransformerNet computes: the folded upsampling and the space-to-depth RGB convs must give what
the layers as written give (outputs and weight gradients), for every network kind and odd sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fastmmd.model.networks as networks
from fastmmd.model.networks import TransformerNet, space_to_depth_conv


def _net(**kw) -> TransformerNet:
    torch.manual_seed(0)
    net = TransformerNet(8, 1, **kw)
    with torch.no_grad():  # non-trivial norms, so every layer matters
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("kw", [{}, {"styles": 3}, {"strength_width": 3}, {"downsample_kernel": 3}])
def test_folded_upsampling_gives_the_outputs_and_gradients_of_upsample_then_conv(kw):
    net = _net(**kw)
    x = torch.rand(2, 3, 37, 22)  # odd sizes: padded to 40 x 24, upsampled from 10 x 6 and 20 x 12
    grads = []
    for folded in (True, False):
        net.set_layout(fold_upsampling=folded)
        net.zero_grad()
        y = net(x)
        (y * torch.linspace(0, 1, y.numel()).view_as(y)).sum().backward()
        grads.append((y.detach(), [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    (y_folded, g_folded), (y_written, g_written) = grads
    assert y_folded.shape == x.shape
    torch.testing.assert_close(y_folded, y_written, rtol=0, atol=1e-5)  # outputs in 0..1
    assert len(g_folded) == len(g_written) == sum(1 for p in net.parameters() if p.requires_grad)
    scale = max(g.abs().max().item() for g in g_written)  # conv biases before a norm get ~0: compare to the largest
    for a, b in zip(g_folded, g_written):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_folded_upsampling_is_the_reflect_padded_nearest_upsampling_conv_at_the_edges():
    """The fold replaces reflection of the upsampled image by replication of the small one; that is
    exact only for a 1 px reflection of a x2 nearest upsampling, so check the border pixels alone."""
    torch.manual_seed(1)
    x, w, b = torch.randn(1, 5, 3, 4), torch.randn(6, 5, 3, 3), torch.randn(6)
    up = F.interpolate(x, scale_factor=2, mode="nearest")
    expected = F.conv2d(F.pad(up, [1, 1, 1, 1], mode="reflect"), w, b)
    got = networks.folded_upsample_conv(x, w, b)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.contiguous(memory_format=torch.channels_last),
                               networks.folded_upsample_conv(x.contiguous(memory_format=torch.channels_last), w, b))


@pytest.mark.parametrize("cin,cout,factor", [(3, 16, 4), (16, 3, 4), (3, 5, 2), (4, 3, 8), (2, 2, 1)])
def test_space_to_depth_conv_gives_the_direct_conv_and_its_gradients(cin, cout, factor):
    torch.manual_seed(cin + cout + factor)
    w = torch.randn(cout, cin, 9, 9, requires_grad=True)
    b = torch.randn(cout, requires_grad=True)
    x = torch.randn(2, cin, 16 + 8, 24 + 8, requires_grad=True)  # what the network feeds it: padded by 4
    direct = F.conv2d(x, w, b)
    folded = space_to_depth_conv(x, w, b, factor)
    torch.testing.assert_close(folded, direct, rtol=1e-5, atol=1e-4)
    weight = torch.randn_like(direct)
    expected = torch.autograd.grad((direct * weight).sum(), (x, w, b))
    got = torch.autograd.grad((folded * weight).sum(), (x, w, b))
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("size", [(8, 8), (37, 22)])
def test_the_networks_rgb_convs_fit_the_space_to_depth_layout_at_every_size(size):
    """On a GPU in eval mode the first and last conv run space-to-depth: what they get (the padded
    input, the decoder's output) must divide by the factor and give the direct conv's result."""
    net = _net().eval()
    seen = {}
    hooks = [layer.register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, args[0]))
             for name, layer in (("first", net.encoder[0][1]), ("last", net.decoder[-1][1]))]
    net(torch.rand(1, 3, *size))
    for h in hooks:
        h.remove()
    for name, layer in (("first", net.encoder[0]), ("last", net.decoder[-1])):
        assert layer.space_to_depth == networks.RGB_SPACE_TO_DEPTH == 4
        conv, x = layer[1], seen[name]
        torch.testing.assert_close(space_to_depth_conv(x, conv.weight, conv.bias, layer.space_to_depth), conv(x),
                                   rtol=1e-5, atol=1e-5)


def test_on_the_cpu_and_in_training_the_rgb_convs_run_directly(monkeypatch):
    """Measured: space-to-depth is slower on the CPU in bf16 and unmeasured in GPU training."""
    calls = []
    monkeypatch.setattr(networks, "space_to_depth_conv", lambda *a: calls.append(a))
    net = _net()
    net(torch.rand(1, 3, 16, 16))
    net.eval()(torch.rand(1, 3, 16, 16))
    assert calls == []


def test_in_cpu_training_the_last_conv_reads_channels_last_with_the_same_outputs_and_gradients():
    """The RGB output conv runs on channels_last input in CPU training only (faster there:
    docs/benchmarks.md, "bf16 without bf16 instructions"); values and weight gradients stay the
    NCHW conv's, and eval mode (stylize, exports) is untouched."""
    net = _net()
    x = torch.rand(2, 3, 37, 22)
    seen = []
    hook = net.decoder[-1][1].register_forward_hook(
        lambda m, args, out: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    results = []
    for channels_last in (True, False):
        net.set_layout(rgb_out_channels_last=channels_last)
        net.zero_grad()
        y = net(x)
        (y * torch.linspace(0, 1, y.numel()).view_as(y)).sum().backward()
        results.append((y.detach(), [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    net.set_layout().eval()
    net(x)
    hook.remove()
    assert seen == [True, False, False]
    (y_cl, g_cl), (y_nchw, g_nchw) = results
    torch.testing.assert_close(y_cl, y_nchw, rtol=0, atol=1e-5)
    scale = max(g.abs().max().item() for g in g_nchw)
    for a, b in zip(g_cl, g_nchw, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_the_network_gives_the_cpus_result():
    net = _net().eval()
    x = torch.rand(2, 3, 37, 22)
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # fp32 convs, no TF32
        torch.testing.assert_close(net.cuda()(x.cuda()).cpu(), net.cpu()(x), rtol=0, atol=1e-4)


def test_the_output_layout_runs_only_the_last_conv_space_to_depth_on_the_cpu_with_int8_weights_as_integers(monkeypatch):
    """``set_layout(space_to_depth_on_cpu="output")`` (what ONNX exports trace): the last conv, and only
    it, at 1/4 resolution on the CPU; an int8-stored one rearranged from its integers and scaled
    after, the int8 network's own numbers."""
    from fastmmd.model.storage import store

    net = store(_net(), "int8")
    x = torch.rand(1, 3, 37, 22)
    with torch.inference_mode():
        direct = net(x)
        calls = []
        original = networks.space_to_depth_conv
        monkeypatch.setattr(networks, "space_to_depth_conv", lambda *a: calls.append(a) or original(*a))
        net.set_layout(space_to_depth_on_cpu="output")
        assert not net.encoder[0].space_to_depth_on_cpu and net.decoder[-1].space_to_depth_on_cpu
        got = net(x)
    assert len(calls) == 1 and calls[0][1].dtype == torch.int8 and calls[0][4] is net.decoder[-1][1].weight_scale
    assert calls[0][0].shape[1] == net.decoder[-1][1].weight_int8.shape[1]  # the last conv's input
    torch.testing.assert_close(got, direct, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="space_to_depth_on_cpu"):
        net.set_layout(space_to_depth_on_cpu="input")


def test_set_layout_refuses_a_factor_that_does_not_divide_the_kernels_reach():
    with pytest.raises(ValueError, match="rgb_space_to_depth"):
        TransformerNet(8, 1).set_layout(rgb_space_to_depth=3)
    assert TransformerNet(8, 1).decoder[-1].channels_last_in_cpu_training  # the default
    net = TransformerNet(8, 1).set_layout(False, 1, False, False)
    assert net.encoder[0].space_to_depth == net.decoder[-1].space_to_depth == 1
    assert not net.decoder[-1].channels_last_in_cpu_training
    assert not any(getattr(m, "folded", False) for m in net.modules())
