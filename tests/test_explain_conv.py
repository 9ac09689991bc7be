import pytest
import torch
import torch.nn.functional as F

from interir import ExplainConv2d
from interir.model.explain_conv import KernelAttention, ThresholdMask


def per_sample_reference(conv: ExplainConv2d, x: torch.Tensor) -> torch.Tensor:
    """Eqs. 16-20 one sample at a time, written out independently of the batched code."""
    outs = []
    cin_g = conv.in_channels // conv.groups
    cout_g = conv.out_channels // conv.groups
    for b in range(x.shape[0]):
        xb = x[b:b + 1]
        m = (xb >= conv.mask.tau.view(1, -1, 1, 1)).float()
        pooled = F.adaptive_avg_pool2d(m, conv.kernel_size)[0]            # (Cin, K, K)
        a = torch.softmax(pooled.flatten(1), dim=1).view_as(pooled)
        w = conv.weight.clone()
        for o in range(conv.out_channels):
            g = o // cout_g
            w[o] = w[o] * a[g * cin_g:(g + 1) * cin_g]
        outs.append(F.conv2d(xb, w, conv.bias, conv.stride, conv.padding, groups=conv.groups))
    return torch.cat(outs)


@pytest.mark.parametrize("cin,cout,groups", [(6, 10, 1), (8, 8, 8), (6, 9, 3)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k,pad", [(3, 1), (5, 2), (3, 0)])
def test_batched_equals_per_sample_loop(cin, cout, groups, stride, k, pad):
    conv = ExplainConv2d(cin, cout, k, stride=stride, padding=pad, groups=groups)
    with torch.no_grad():
        conv.mask.tau.uniform_(-0.3, 0.3)
    x = torch.randn(4, cin, 13, 11)
    y = conv(x)
    ref = per_sample_reference(conv, x)
    assert y.shape == ref.shape
    rel = (y - ref).norm() / ref.norm()
    assert rel <= 1e-5


def test_samples_get_different_kernels():
    conv = ExplainConv2d(4, 4, 3, padding=1, groups=4)
    x = torch.randn(2, 4, 16, 16)
    x[1, :, :8] += 5.0                     # top half of sample 1 above threshold
    attn = conv.attention(conv.mask(x))
    assert not torch.allclose(attn[0], attn[1])
    assert torch.allclose(attn.sum((2, 3)), torch.ones(2, 4))


def test_no_bias_and_matches_conv2d_when_attention_is_uniform():
    conv = ExplainConv2d(5, 7, 3, padding=1, bias=False)
    x = torch.randn(3, 5, 9, 9)
    with torch.no_grad():
        conv.mask.tau.fill_(1e9)            # mask all zero -> uniform attention 1/9
    y = conv(x)
    ref = F.conv2d(x, conv.weight / 9.0, None, padding=1)
    assert torch.allclose(y, ref, atol=1e-6)


def test_gradients_reach_weight_bias_and_tau():
    conv = ExplainConv2d(6, 6, 3, padding=1, groups=6)
    x = torch.randn(2, 6, 12, 12, requires_grad=True)
    conv(x).pow(2).sum().backward()
    for name in ("weight", "bias"):
        g = getattr(conv, name).grad
        assert g is not None and g.abs().sum() > 0, name
    assert conv.mask.tau.grad is not None and conv.mask.tau.grad.abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mask_is_binary_and_straight_through():
    mask = ThresholdMask(3)
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    m = mask(x)
    assert set(m.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(m.detach(), (x >= 0).float())
    m.sum().backward()
    assert mask.tau.grad.abs().sum() > 0


def test_attention_shape_and_nonsquare_kernel():
    att = KernelAttention((3, 5))
    a = att(torch.rand(2, 4, 10, 10))
    assert a.shape == (2, 4, 3, 5)
    conv = ExplainConv2d(4, 4, (3, 5), padding=(1, 2))
    assert conv(torch.randn(2, 4, 8, 9)).shape == (2, 4, 8, 9)


def test_bad_groups_rejected():
    with pytest.raises(ValueError, match="divisible"):
        ExplainConv2d(6, 4, 3, groups=4)


def test_attention_gain_scales_the_modulation_and_keeps_the_recorded_attention():
    torch.manual_seed(0)
    plain = ExplainConv2d(4, 4, 3, padding=1, groups=4)
    unit = ExplainConv2d(4, 4, 3, padding=1, groups=4, attention_gain=9.0)
    unit.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4, 9, 9)
    # W ⊙ 9·A equals (9·W) ⊙ A: the same function class, only the parametrisation differs
    with torch.no_grad():
        plain.weight.mul_(9.0)
    assert torch.allclose(unit(x), plain(x), atol=1e-5)
    # a uniform attention (constant mask) leaves the kernel unchanged: a plain depthwise conv
    with torch.no_grad():
        unit.mask.tau.fill_(-1e3)
    assert torch.allclose(unit(x), F.conv2d(x, unit.weight, unit.bias, padding=1, groups=4), atol=1e-5)
    with pytest.raises(ValueError, match="attention_gain"):
        ExplainConv2d(4, 4, 3, attention_gain=0.0)


def test_explain_unit_conv_type_builds_gained_convs():
    import interir
    m = interir.build_model("tiny", n_blocks=1, channels=4, conv_type="explain_unit")
    gains = {mod.attention_gain for mod in m.modules() if isinstance(mod, ExplainConv2d)}
    assert gains == {9.0}
    m2 = interir.build_model("tiny", n_blocks=1, channels=4)
    assert {mod.attention_gain for mod in m2.modules() if isinstance(mod, ExplainConv2d)} == {1.0}


@pytest.mark.parametrize("shape,channels_last", [((1, 6, 128, 128), True), ((1, 6, 128, 128), False),
                                                 ((3, 5, 13, 7), False), ((2, 4, 2, 1), True),
                                                 ((1, 3, 9, 40), True)])
@pytest.mark.parametrize("kernel", [(3, 3), (5, 2)])
def test_bool_mask_bin_means_equal_adaptive_avg_pool(shape, channels_last, kernel):
    from interir.model.explain_conv import bin_means
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    mask = x >= 0.2
    got = bin_means(mask, kernel)
    assert got.shape == (shape[0], shape[1], *kernel) and got.dtype == torch.float32
    assert torch.allclose(got, F.adaptive_avg_pool2d(mask.float(), kernel), rtol=1e-6, atol=0)


@pytest.mark.parametrize("batch,side,channels_last", [(3, 11, False), (1, 16, True)])
def test_fused_mask_pool_node_equals_the_mask_then_pool_graph(batch, side, channels_last):
    """With autograd and no hooks the conv runs Eqs. 16-17 as one node; a hook on the mask makes it
    take the mask module (float mask, straight-through) and the pool: same values and gradients."""
    torch.manual_seed(0)
    conv = ExplainConv2d(6, 6, 3, padding=1, groups=6)
    with torch.no_grad():
        conv.mask.tau.normal_(0.0, 0.3)
    x = torch.randn(batch, 6, side, side + 3)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    seen = []
    results = []
    for hooked in (False, True):
        h = conv.mask.register_forward_hook(lambda m, a, out: seen.append(out.dtype)) if hooked else None
        assert conv._fused_mask_pool(x.requires_grad_()) is not hooked
        conv.zero_grad(set_to_none=True)
        xg = x.detach().clone().requires_grad_()
        (conv(xg) * torch.linspace(-1, 1, xg.numel()).view_as(xg)).sum().backward()
        results.append((xg.grad, conv.mask.tau.grad.clone(), conv.weight.grad.clone()))
        if h is not None:
            h.remove()
    assert seen == [torch.float32]              # the hooked run saw the float mask
    for fused, plain in zip(*results):
        assert float((fused - plain).norm() / plain.norm()) <= 1e-5
    assert results[0][1].abs().sum() > 0
