"""The optimised model against a literal reference implementation of the same equations.

The functions below are the straightforward forms the model was first written in (LayerNorm
written out, the straight-through mask as ``hard + (soft − soft.detach())``, ``adaptive_avg_pool``,
one convolution per sample, ``I − η·H``): the speed work (fused normalisation, folded affine and
channel-attention scales, the one-node surrogate gradient, bool masks) must keep the outputs and
the gradients equal to them (relative error ≤ 1e-5), with the same parameters.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import interir
from interir.model.explain_conv import ExplainConv2d
from interir.model.unfolding import RESM


def T(m: torch.Tensor) -> torch.Tensor:
    return m.transpose(-1, -2)


def frob(m: torch.Tensor) -> torch.Tensor:
    return m / (m.flatten(2).norm(dim=-1)[..., None, None] + 1e-6)


def ref_layernorm(ln, x):
    mu = x.mean(1, keepdim=True)
    var = (x - mu).pow(2).mean(1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight.view(1, -1, 1, 1) + ln.bias.view(1, -1, 1, 1)


def ref_explain_conv(conv: ExplainConv2d, x):
    shifted = x - conv.mask.tau.view(1, -1, 1, 1)
    hard = (shifted >= 0).to(x.dtype)
    soft = torch.sigmoid(shifted / conv.mask.temperature)
    pooled = F.adaptive_avg_pool2d(hard + (soft - soft.detach()), conv.kernel_size)      # Eqs. 16-17
    b, c, kh, kw = pooled.shape
    attn = torch.softmax(pooled.reshape(b, c, -1), -1).reshape(b, c, kh, kw)         # Eq. 18
    g = conv.groups
    outs = []
    for i in range(b):                                                                # Eqs. 19-20
        a = attn[i].view(g, 1, c // g, kh, kw) * conv.attention_gain
        w = (conv.weight.view(g, -1, c // g, kh, kw) * a).reshape_as(conv.weight)
        outs.append(F.conv2d(x[i:i + 1], w, conv.bias, conv.stride, conv.padding, groups=g))
    return torch.cat(outs)


def ref_epblock(blk, inp):
    dw = blk.conv2
    x = blk.conv1(ref_layernorm(blk.norm1, inp))
    x = ref_explain_conv(dw, x) if isinstance(dw, ExplainConv2d) else dw(x)
    x1, x2 = x.chunk(2, 1)
    x = x1 * x2
    x = blk.conv3(x * blk.sca.conv(blk.sca.pool(x)))
    y = inp + x * blk.beta
    x1, x2 = blk.conv4(ref_layernorm(blk.norm2, y)).chunk(2, 1)
    return y + blk.conv5(x1 * x2) * blk.gamma


def ref_shrink(sh, x):
    return sh.conv2(F.relu(sh.conv1(x)))


def ref_resm(r: RESM, I, A, B, Lambda, z):
    v = ref_epblock(r.ep_v, I)
    s = ref_shrink(r.shrink, Lambda + v)
    if r.f_form == "additive":
        k = 2.0 * torch.sigmoid(r.kappa.fc2(F.relu(r.kappa.fc1((Lambda + v).mean((2, 3), keepdim=True)))))
        prior = ref_epblock(r.ep_f, v + Lambda + k * s)
    else:
        prior = ref_epblock(r.ep_f, Lambda + v - s)
    F_I = T(A) @ (A @ I @ B - z) @ T(B) + prior
    H = T(A) @ A @ F_I @ B @ T(B) + ref_epblock(r.ep_h_gate, 1.0 - s) * ref_epblock(r.ep_h_f, F_I)
    return I - r.eta * H


def ref_model(model, x):
    h, w = x.shape[-2:]
    x_pad = model.pad(x)
    z = model.embed(x_pad)
    I, Lambda = z, model.init.f1(z) + z
    A, B = frob(z @ T(z)), frob(T(z) @ z)
    for blk in model.blocks:
        I = ref_resm(blk.resm, I, A, B, Lambda, z)
        a0, a1 = ref_epblock(blk.dmum.ep_a, torch.cat([I @ B, z], 1)).chunk(2, 1)
        A = frob(a0 @ T(a1))
        b0, b1 = ref_epblock(blk.dmum.ep_b, torch.cat([A @ I, z], 1)).chunk(2, 1)
        B = frob(T(b0) @ b1)
        u = Lambda + ref_epblock(blk.mum.ep, I)
        Lambda = u - ref_shrink(blk.mum.shrink, u)
    I = ref_resm(model.final_resm, I, A, B, Lambda, z)
    return (model.head(I) + x_pad)[..., :h, :w]


def _randomised(conv_type: str, f_form: str) -> interir.InterIR:
    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=2, channels=8, conv_type=conv_type, f_form=f_form)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma", "tau")) or "kappa.fc2" in name:
                p.normal_(0.0, 0.3)      # every residual branch, threshold and Wκ active
    return model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.parametrize("conv_type,f_form", [("explain", "additive"), ("explain_unit", "subtractive"),
                                              ("standard", "additive")])
@pytest.mark.parametrize("batch,size", [(1, (20, 28)), (3, (17, 13))])
def test_outputs_and_gradients_equal_the_reference(conv_type, f_form, batch, size):
    model = _randomised(conv_type, f_form)
    x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert _rel(model(x), ref_model(model, x)) <= 1e-5
    grads = []
    for fn in (model, lambda inp: ref_model(model, inp)):
        model.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_()
        (fn(xg) * torch.linspace(-1, 1, xg.numel()).view_as(xg)).sum().backward()
        grads.append({"input": xg.grad, **{n: p.grad.clone() for n, p in model.named_parameters()
                                           if p.grad is not None}})
    fast, ref = grads
    assert fast.keys() == ref.keys()
    for name in ref:
        assert _rel(fast[name], ref[name]) <= 1e-5, name


def test_trace_masks_are_the_reference_masks():
    model = _randomised("explain", "additive").eval()
    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    captured = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: captured.__setitem__(name, args[0]))
             for name, m in model.named_modules() if isinstance(m, ExplainConv2d)]
    tr = interir.trace(model, x)
    for h in hooks:
        h.remove()
    assert captured.keys() == tr.masks.keys()
    for name, inp in captured.items():
        tau = model.get_submodule(name).mask.tau.view(1, -1, 1, 1)
        assert tr.masks[name].dtype == torch.bool
        assert torch.equal(tr.masks[name], inp >= tau)


def test_data_gradient_is_the_gradient_of_the_data_term():
    g = torch.Generator().manual_seed(3)
    I = torch.randn(2, 4, 6, 5, generator=g, requires_grad=True)
    A, B = torch.randn(2, 4, 6, 6, generator=g), torch.randn(2, 4, 5, 5, generator=g)
    z = torch.randn(2, 4, 6, 5, generator=g)
    (0.5 * (A @ I @ B - z).pow(2).sum()).backward()
    assert _rel(RESM.data_gradient(I.detach(), A, B, z), I.grad) <= 1e-5
