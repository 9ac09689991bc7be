import pytest
import torch

import interir
from interir.interventions import uniform_attention, zero_multiplier
from interir.model.explain_conv import ExplainConv2d


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.fixture
def model():
    return interir.build_model("tiny", n_blocks=3, channels=8).eval()


def test_trace_output_equals_forward(model):
    x = torch.rand(1, 3, 30, 22)
    with torch.no_grad():
        y = model(x)
    tr = interir.trace(model, x)
    assert torch.equal(tr.output, y)
    assert len(tr.iterations) == model.config["n_blocks"] + 1
    assert torch.equal(tr.iterations[-1].image, y)
    assert tr.iterations[0].image.shape == x.shape
    with torch.no_grad():       # the last entry's I, decoded by the head, is the output
        assert torch.equal(model.decode(tr.iterations[-1].I, model.pad(x))[..., :30, :22], y)
        assert torch.equal(tr.iterations[1].image, model.decode(tr.iterations[1].I, model.pad(x))[..., :30, :22])


def test_trace_contents(model):
    tr = interir.trace(model, torch.rand(1, 3, 24, 32))
    n_conv = sum(isinstance(m, ExplainConv2d) for m in model.modules())
    assert len(tr.masks) == len(tr.attention) == len(tr.tau) == n_conv
    for name, mask in tr.masks.items():
        assert mask.dtype == torch.bool and mask.dim() == 4 and mask.shape[0] == 1
        att = tr.attention[name]
        assert att.shape[-2:] == (3, 3)
        assert torch.allclose(att.sum((2, 3)), torch.ones(att.shape[:2]), atol=1e-5)
    for it in tr.iterations:
        assert it.fidelity >= 0 and it.step_norm >= 0
    assert tr.embedding.dim() == 1 and tr.embedding.numel() == 2 * 8 * 4
    assert tr.summary()["n_iterations"] == 4


def test_fidelity_and_step_norm_definitions(model):
    tr = interir.trace(model, torch.rand(1, 3, 16, 16))
    it1, it0 = tr.iterations[1], tr.iterations[0]
    with torch.no_grad():
        z = model.embed(model.pad(tr.input))
    expect = (it1.A @ it1.I @ it1.B - z).pow(2).mean()
    assert it1.fidelity == pytest.approx(float(expect), rel=1e-5)
    expect_step = (it1.I - it0.I).norm() / it0.I.norm()
    assert it1.step_norm == pytest.approx(float(expect_step), rel=1e-5)
    assert tr.iterations[0].step_norm == pytest.approx(float((it0.I - z).norm() / z.norm()), rel=1e-5)


def test_embedding_exists_for_standard_conv():
    m = interir.build_model("tiny", n_blocks=1, channels=8, conv_type="standard").eval()
    tr = interir.trace(m, torch.rand(1, 3, 16, 16))
    assert tr.masks == {} and tr.embedding.numel() == 2 * 8 * 2


def test_no_hooks_left_after_trace_and_after_exception(model):
    before = hook_count(model)
    interir.trace(model, torch.rand(1, 3, 16, 16))
    assert hook_count(model) == before

    def boom(*_):
        raise RuntimeError("boom inside forward")
    h = model.blocks[1].dmum.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        interir.trace(model, torch.rand(1, 3, 16, 16))
    h.remove()
    assert hook_count(model) == before


def test_forward_after_trace_is_bit_identical(model):
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        before = model(x)
    interir.trace(model, x)
    with torch.no_grad():
        after = model(x)
    assert torch.equal(before, after)


def test_trace_rejects_batches(model):
    with pytest.raises(ValueError, match="one image"):
        interir.trace(model, torch.rand(2, 3, 8, 8))


def test_interventions_change_output_and_clean_up(model):
    with torch.no_grad():
        for p in model.parameters():            # make residual scales non-zero
            if p.dim() == 4 and p.shape[2:] == (1, 1) and p.shape[0] == 1:
                p.fill_(0.5)
        model.head[0].weight.normal_(0, 0.1)
    x = torch.rand(1, 3, 16, 16)
    base = interir.trace(model, x)
    before = hook_count(model)
    with uniform_attention(model):
        uni = interir.trace(model, x)
    assert all(torch.allclose(a, torch.full_like(a, 1 / 9)) for a in uni.attention.values())
    with zero_multiplier(model):
        zl = interir.trace(model, x)
    assert all(float(it.Lambda.abs().max()) == 0.0 for it in zl.iterations)
    assert not torch.equal(uni.output, base.output)
    assert not torch.equal(zl.output, base.output)
    assert hook_count(model) == before
    assert torch.equal(interir.trace(model, x).output, base.output)


def test_save_npz(tmp_path, model):
    import json
    import numpy as np
    tr = interir.trace(model, torch.rand(1, 3, 12, 12))
    path = tr.save_npz(tmp_path / "t.npz")
    data = np.load(path)
    assert np.array_equal(data["output"], tr.output.numpy())
    assert "iterations.3.A" in data.files
    assert json.loads(str(data["summary_json"]))["n_iterations"] == 4
