"""The optional veil estimate (network.veil: pooled; interir/model/veil.py)."""
import numpy as np
import pytest
import torch

import interir
from interir.model.veil import CELL, VeilEstimate, cell_statistics


def test_veil_none_is_not_written_into_the_config_and_bad_values_are_refused():
    assert "veil" not in interir.make_config("tiny")
    assert "veil" not in interir.make_config("tiny", veil="none")   # same config, same weights hash
    assert interir.make_config("tiny", veil="pooled")["veil"] == "pooled"
    with pytest.raises(ValueError, match="veil"):
        interir.build_model("tiny", veil="dcp")


@pytest.mark.parametrize("hw", [(64, 96), (37, 70), (5, 3)])
def test_cell_statistics_match_numpy(hw):
    torch.manual_seed(0)
    x = torch.rand(2, 3, *hw)
    s = cell_statistics(x, cell=16)
    gh, gw = -(-hw[0] // 16), -(-hw[1] // 16)
    assert s.shape == (2, 8, gh, gw)
    a = x.numpy()
    for i in range(gh):
        for j in range(gw):
            cell = a[1, :, 16 * i:16 * (i + 1), 16 * j:16 * (j + 1)]   # partial cells at the edge
            np.testing.assert_allclose(s[1, :3, i, j], cell.mean((1, 2)), atol=1e-5)
            np.testing.assert_allclose(s[1, 3:6, i, j], cell.std((1, 2)), atol=1e-3)
            assert float(s[1, 6, i, j]) == pytest.approx(cell.min(0).min())
            assert float(s[1, 7, i, j]) == pytest.approx(cell.max(0).max())


def test_veil_starts_at_zero_so_a_warm_start_is_unchanged_then_it_trains(tmp_path):
    torch.manual_seed(0)
    plain = interir.build_model("tiny", n_blocks=2, channels=8).eval()
    veiled = interir.build_model("tiny", n_blocks=2, channels=8, veil="pooled").eval()
    missing = veiled.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("veil.") for k in missing)
    x = torch.rand(1, 3, 45, 70)
    with torch.no_grad():
        assert torch.equal(veiled(x), plain(x))
    veiled.train()
    loss = (veiled(x) - 0.5).abs().mean()
    loss.backward()
    assert float(veiled.veil.out.weight.grad.abs().sum()) > 0


def test_veil_is_a_smooth_offset_on_every_exit_and_survives_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=2, channels=8, veil="pooled").eval()
    with torch.no_grad():
        model.veil.out.bias.copy_(torch.tensor([0.1, -0.2, 0.05]))
    x = torch.rand(1, 3, 2 * CELL + 5, CELL + 7)
    with torch.no_grad():
        v = model.veil(model.pad(x))
        assert v.shape[-2:] == model.pad(x).shape[-2:]
        np.testing.assert_allclose(v.mean((2, 3))[0], [0.1, -0.2, 0.05], atol=1e-6)  # weights 0: the bias
        plain = [model.head(I) + model.pad(x) for I in model.unfold(model.pad(x))]
        for stage, p in zip(model.stages(x), plain):
            assert torch.allclose(stage, (p + v)[..., :x.shape[2], :x.shape[3]], atol=1e-6)
    tr = interir.trace(model, x)
    assert torch.equal(tr.output, model(x))
    interir.save_pretrained(model, tmp_path / "w")
    again = interir.load_pretrained(tmp_path / "w")
    assert again.config["veil"] == "pooled" and isinstance(again.veil, VeilEstimate)
    assert torch.equal(again(x), model(x))
