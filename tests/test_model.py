import pytest
import torch

import interir
from interir.model import EPBlock
from interir.model.unfolding import frob_normalize


def small(**kw):
    return interir.build_model("tiny", n_blocks=2, channels=8, **kw).eval()


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (2, 3, 21, 34), (1, 3, 1, 1), (1, 3, 3, 70), (1, 3, 64, 5)])
def test_any_size_same_shape(shape):
    m = small()
    x = torch.rand(*shape)
    with torch.no_grad():
        y = m(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_batch_independent():
    m = small()
    x = torch.rand(3, 3, 24, 20)
    with torch.no_grad():
        y = m(x)
        y1 = m(x[1:2])
    assert torch.allclose(y[1:2], y1, atol=1e-5)


@pytest.mark.parametrize("conv_type", ["explain", "standard"])
@pytest.mark.parametrize("f_form", ["additive", "subtractive"])
def test_variants_build_run_and_train(conv_type, f_form):
    m = small(conv_type=conv_type, f_form=f_form).train()
    x = torch.rand(2, 3, 16, 16)
    loss = (m(x) - x).abs().mean()
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    has_tau = any("tau" in n for n, _ in m.named_parameters())
    assert has_tau == (conv_type == "explain")
    has_kappa = any(".kappa." in n for n, _ in m.named_parameters())
    assert has_kappa == (f_form == "additive")


def test_epblock_starts_as_identity():
    blk = EPBlock(8)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(blk(x), x)


def test_presets_and_overrides():
    cfg = interir.make_config("paper")
    assert cfg["n_blocks"] == 16 and cfg["channels"] == 48 and cfg["kernel_size"] == 3
    assert cfg["eta"] == pytest.approx(0.01)
    m = interir.build_model("tiny", n_blocks=3)
    assert len(m.blocks) == 3 and len(m.resms()) == 4
    with pytest.raises(ValueError, match="unknown preset"):
        interir.build_model("huge")
    with pytest.raises(ValueError, match="unknown model option"):
        interir.build_model("tiny", widht=3)
    with pytest.raises(ValueError, match="conv_type"):
        interir.build_model("tiny", conv_type="dense")


def test_frobenius_normalisation_and_matrix_shapes():
    m = small()
    tr = interir.trace(m, torch.rand(1, 3, 20, 36))
    it = tr.iterations[0]
    assert it.A.shape == (1, 8, 5, 5) and it.B.shape == (1, 8, 9, 9)
    assert it.I.shape == (1, 8, 5, 9) and it.Lambda.shape == (1, 8, 5, 9)
    norms = it.A.flatten(2).norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)
    assert torch.allclose(frob_normalize(torch.ones(1, 1, 2, 2)).sum(), torch.tensor(2.0))


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        small()(torch.rand(1, 4, 8, 8))


def test_learned_norm_scale_starts_as_unit_norm_and_scales_A_and_B(tmp_path):
    import interir
    torch.manual_seed(0)
    unit = interir.build_model("tiny", n_blocks=2, channels=8)
    learned = interir.build_model("tiny", n_blocks=2, channels=8, norm_scale="learned")
    missing = learned.load_state_dict(unit.state_dict(), strict=False).missing_keys
    assert missing and all(k.endswith(("norm_a.gain", "norm_b.gain")) for k in missing)
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        assert torch.allclose(learned(x), unit(x), atol=1e-6)        # ρ = 1: the paper's unit Norm
        learned.init.norm_a.gain.fill_(3.0)
    tr = interir.trace(learned, x)
    assert torch.allclose(tr.iterations[0].A.flatten(2).norm(dim=-1), torch.full((1, 8), 3.0), atol=1e-4)
    interir.save_pretrained(learned, tmp_path / "w")
    again = interir.load_pretrained(tmp_path / "w")
    assert again.config["norm_scale"] == "learned" and float(again.init.norm_a.gain.detach()[0]) == 3.0
    with pytest.raises(ValueError, match="norm_scale"):
        interir.build_model("tiny", norm_scale="spectral")


def test_residual_norm_scale_starts_as_identity_and_adds_a_low_rank_part():
    import interir
    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=2, channels=8, norm_scale="residual")
    x = torch.rand(1, 3, 24, 20)
    tr = interir.trace(model, x)                       # γ = 0: A = 1 (h × h), B = 1 (w × w)
    A, B = tr.iterations[0].A, tr.iterations[0].B
    assert torch.equal(A[0, 0], torch.eye(A.shape[-1])) and torch.equal(B[0, 3], torch.eye(B.shape[-1]))
    with torch.no_grad():
        for m in model.modules():
            if m.__class__.__name__ == "MatrixNorm":
                m.gain.fill_(0.5)
    tr = interir.trace(model, x)
    for it in tr.iterations:                           # A − 1 = 0.5·M/‖M‖: Frobenius norm 0.5, and A stays full rank
        eye = torch.eye(it.A.shape[-1])
        assert torch.allclose((it.A - eye).flatten(2).norm(dim=-1), torch.full((1, 8), 0.5), atol=1e-4)
        assert bool((torch.linalg.matrix_rank(it.A[0]) == it.A.shape[-1]).all())
    grad, = torch.autograd.grad(model(x).sum(), model.blocks[0].dmum.ep_a.beta)
    assert float(grad.abs().sum()) > 0                 # the DMUM is trained once γ ≠ 0


@pytest.mark.parametrize("channels_last", [False, True])
def test_layernorm_and_simplegate_nodes_have_exact_gradients(channels_last):
    """The closed-form LayerNorm backward and the one-buffer SimpleGate backward pass gradcheck
    (float64, finite differences) and equal the written-out forms' values."""
    from interir.model.epblock import LayerNorm2d, SimpleGate
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, 4, generator=g, dtype=torch.float64) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    norm = LayerNorm2d(6).double()
    assert torch.autograd.gradcheck(norm.normalize, (x,))
    assert torch.autograd.gradcheck(SimpleGate(), (x,))
    with torch.no_grad():
        mu = x.mean(1, keepdim=True)
        ref = (x - mu) / torch.sqrt((x - mu).pow(2).mean(1, keepdim=True) + norm.eps)
        assert torch.allclose(norm.normalize(x), ref)
    assert torch.allclose(norm.normalize(x), ref) and norm.normalize(x).grad_fn is not None
    assert torch.equal(SimpleGate()(x), x[:, :3] * x[:, 3:])
