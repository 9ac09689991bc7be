"""interir.attribution: "why this pixel?" — integrated gradients from a blurred baseline, the
per-iteration change of a region and the most active explainable-conv channels there."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import interir
from interir.attribution import (Region, RegionError, attribution_map, channel_activity, diffusion_index,
                                 explain_region, gaussian_blur, iteration_change)
from interir.errors import InterIRError

torch.set_num_threads(1)


def busy_model(n_blocks: int = 1, conv_type: str = "explain", seed: int = 0) -> interir.InterIR:
    """A tiny InterIR whose EPBlocks are not the identity (a fresh one has β = γ = 0)."""
    torch.manual_seed(seed)
    m = interir.build_model("tiny", n_blocks=n_blocks, conv_type=conv_type).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.normal_(0.0, 0.3)
            elif name.endswith("tau"):
                p.normal_(0.0, 0.3)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([0.5 + 0.3 * torch.sin(6 * xx + 2 * yy), 0.4 + 0.3 * yy, 0.6 - 0.3 * xx * yy])
    return (base + 0.08 * torch.rand(3, h, w, generator=g)).clamp(0, 1)[None]


# ----------------------------------------------------------------------------- regions
def test_region_point_and_box_masks():
    m = Region.point(5, 3, radius=2).mask(8, 10)
    yy, xx = np.mgrid[0:8, 0:10]
    np.testing.assert_array_equal(m, (yy - 3) ** 2 + (xx - 5) ** 2 <= 4)
    assert Region.point(0, 0, radius=0).mask(4, 4).sum() == 1
    b = Region.box(7, 6, 2, 1).mask(8, 10)          # corners in any order, half-open
    assert b.sum() == 5 * 5 and b[1:6, 2:7].all()
    clipped = Region.box(-5, -5, 3, 2).mask(8, 10)  # partly outside: clipped
    assert clipped.sum() == 3 * 2
    assert Region.parse({"x": 1, "y": 2}).radius == 8
    assert Region.parse((1, 2, 3, 4)).kind == "box"
    assert Region.parse([4, 5, 1]).to_dict() == {"kind": "point", "x": 4.0, "y": 5.0, "radius": 1.0}


@pytest.mark.parametrize("make, words", [
    (lambda: Region.point(10, 2).mask(8, 10), "outside"),
    (lambda: Region.point(-1, 2).mask(8, 10), "outside"),
    (lambda: Region.box(20, 20, 30, 30).mask(8, 10), "outside"),
    (lambda: Region.box(3, 3, 3, 6), "empty"),
    (lambda: Region.point(1, 1, radius=-1), "radius"),
    (lambda: Region.point(float("nan"), 1), "finite"),
    (lambda: Region.parse({"x": "left", "y": 1}), "number"),
    (lambda: Region.parse("here"), "cannot read"),
    (lambda: Region.parse({"a": 1}), "needs"),
])
def test_bad_regions_raise_one_line_value_errors(make, words):
    with pytest.raises(ValueError) as info:
        make()
    assert isinstance(info.value, (RegionError, InterIRError))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_explain_region_rejects_bad_region_before_work():
    model = busy_model()
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(RegionError, match="outside the 16×12 image"):
        explain_region(model, torch.rand(1, 3, 12, 16), Region.point(20, 5))
    assert not calls


# ----------------------------------------------------------------------------- (a) attribution
@pytest.mark.parametrize("path", ["blur", "linear"])
def test_completeness_gap_small_with_enough_steps(path):
    model = busy_model(conv_type="standard")    # smooth apart from ReLU kinks
    x = smooth_image(32, 40)
    a = attribution_map(model, x, Region.box(10, 8, 22, 20), steps=48, path=path, blur_sigma=4.0, max_side=None)
    assert abs(a.f_input - a.f_baseline) > 1e-3   # the check means something
    assert a.completeness_gap < 0.01, a.completeness_gap
    coarse = attribution_map(model, x, Region.box(10, 8, 22, 20), steps=1, path=path, blur_sigma=4.0, max_side=None)
    assert coarse.completeness_gap > a.completeness_gap


def test_completeness_explainable_model_and_reported_values_are_the_model_s():
    model = busy_model(conv_type="explain")
    x = smooth_image(32, 40, seed=1)
    region = Region.point(25, 12, radius=4)
    a = attribution_map(model, x, region, steps=32, blur_sigma=4.0, max_side=None)
    assert a.completeness_gap < 0.05, a.completeness_gap
    w = torch.from_numpy(region.mask(32, 40)).float()
    with torch.no_grad():
        f_in = float((model(x) * w).sum())
        f_base = float((model(gaussian_blur(x, 4.0)) * w).sum())
    assert a.f_input == pytest.approx(f_in, rel=1e-4)
    assert a.f_baseline == pytest.approx(f_base, rel=1e-4)
    assert a.map.shape == (32, 40) and a.map.dtype == np.float32 and (a.map >= 0).all()
    assert "Integrated gradients" in a.method and a.params["steps"] == 32


def _local_model() -> nn.Module:
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m   # receptive field 5×5: the output at p depends on input pixels within 2 px


@pytest.mark.parametrize("max_side, reach", [(None, 2), (64, 12)])
def test_attribution_of_a_local_model_stays_near_the_region(max_side, reach):
    x = smooth_image(96, 128, seed=2)
    cx, cy, r = 97, 30, 3                                # asymmetric: catches x/y swaps and flips
    a = attribution_map(_local_model(), x, Region.point(cx, cy, radius=r), max_side=max_side, steps=4)
    yy, xx = np.mgrid[0:96, 0:128]
    near = (yy - cy) ** 2 + (xx - cx) ** 2 <= (r + reach + 1) ** 2
    share = a.map[near].sum() / a.map.sum()
    assert share > 0.99, share
    wy, wx = (a.map * yy).sum() / a.map.sum(), (a.map * xx).sum() / a.map.sum()
    assert abs(wx - cx) < 3 and abs(wy - cy) < 3
    if max_side is None:
        assert a.map[~near].max() == 0.0                # exactly nothing outside the receptive field
    assert a.params["resolution"] == ([96, 128] if max_side is None else [48, 64])


def test_attribution_leaves_the_model_as_it_was_and_works_under_inference_mode():
    model = busy_model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():
        a = attribution_map(model, smooth_image(24, 24), Region.point(5, 5, 2), steps=2, mask_gradient="zero")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())
    assert np.isfinite(a.map).all() and a.params["mask_gradient"] == "zero"


def test_attribution_parameter_errors():
    model, x = _local_model(), smooth_image(16, 16)
    for kw in ({"steps": 0}, {"path": "curved"}, {"blur_sigma": -1.0}, {"mask_gradient": "soft"}, {"max_side": 2}):
        with pytest.raises(ValueError):
            attribution_map(model, x, Region.point(3, 3), **kw)
    with pytest.raises(ValueError, match="one image"):
        attribution_map(model, torch.rand(2, 3, 8, 8), Region.point(3, 3))


def test_diffusion_index():
    assert diffusion_index(np.ones((8, 8))) == pytest.approx(100.0)
    spike = np.zeros((8, 8))
    spike[2, 3] = 5.0
    assert diffusion_index(spike) == pytest.approx(0.0, abs=1e-9)


# ----------------------------------------------------------------------------- (b) per-iteration change
def test_iteration_change_matches_direct_computation():
    model = busy_model(n_blocks=2)
    x = smooth_image(40, 52, seed=4)
    tr = interir.trace(model, x)
    region = Region.box(30, 4, 45, 20)
    got = iteration_change(tr.input, [it.image for it in tr.iterations], region)
    with torch.no_grad():
        stages = model.stages(x)                       # an independent decode of every iteration
    assert len(stages) == len(got.region) == 3
    prev = x
    for k, img in enumerate(stages):
        d = (img - prev).abs().mean(1)[0]
        assert got.region[k] == pytest.approx(float(d[4:20, 30:45].mean()), rel=1e-4, abs=1e-7)
        assert got.image[k] == pytest.approx(float(d.mean()), rel=1e-4, abs=1e-7)
        prev = img
    # 8-bit HWC arrays (the app's compact trace) give the same up to quantisation
    u8 = lambda t: (t[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)  # noqa: E731
    q = iteration_change(u8(x), [u8(s) for s in stages], region)
    np.testing.assert_allclose(q.region, got.region, atol=2 / 255)
    with pytest.raises(ValueError, match="shape"):
        iteration_change(x, [torch.rand(1, 3, 8, 8)], region)


# ----------------------------------------------------------------------------- (c) channels
def test_channel_activity_ranks_a_constructed_case():
    # a 16×16 image, masks at 4×4 (stride 4); the region is the top-right 2×2 cells
    a = np.zeros((4, 4, 4), dtype=bool)
    a[0] = True                       # on everywhere: region 1, image 1
    a[1, 0:2, 2:4] = True             # only in the region: region 1, image 0.25
    a[3, 0:2, 3] = True               # half of the region: region 0.5, image 0.125
    b = np.zeros((1, 2, 4, 4), dtype=bool)
    b[0, 0, 0:2, 2:4] = True
    b[0, 0, 3, :] = True              # region 1, image 0.5
    b[0, 1, 1, 3] = True              # region 0.25
    masks = {"blocks.0.resm.ep_v.conv2": a, "final_resm.ep_f.conv2": torch.from_numpy(b)}
    tau = {"blocks.0.resm.ep_v.conv2": np.array([0.1, 0.2, 0.3, 0.4]), "final_resm.ep_f.conv2": torch.tensor([-1.0, 1.0])}
    att = {"blocks.0.resm.ep_v.conv2": np.random.rand(4, 3, 3)}
    got = channel_activity(masks, tau, Region.box(8, 0, 16, 8), (16, 16), top_k=5, attention=att)
    order = [(c.layer.split(".")[0], c.channel) for c in got]
    assert order == [("blocks", 1), ("final_resm", 0), ("blocks", 0), ("blocks", 3), ("final_resm", 1)]
    first = got[0]
    assert (first.region, first.image, first.tau) == (1.0, 0.25, 0.2)
    assert first.lift == 0.75 and first.attention.shape == (3, 3)
    assert got[1].image == 0.5 and got[1].tau == -1.0 and got[1].attention is None
    assert got[3].region == 0.5 and got[4].region == 0.25
    # a one-pixel region inside cell (0, 3): exactly that cell's value; known whole-image rates are used
    one = channel_activity(masks, tau, Region.point(13, 2, radius=0), (16, 16), top_k=10,
                           image_rates={"blocks.0.resm.ep_v.conv2": np.full(4, 0.9)})
    for c in one:
        m = a if c.layer.startswith("blocks") else b[0]
        assert c.region == float(m[c.channel, 0, 3])
        if c.layer.startswith("blocks"):
            assert c.image == 0.9
    # a 15×15 image pads to 16 (stride 4) as InterIR does; a 5×5 map fits no integer stride
    assert len(channel_activity(masks, tau, Region.point(14, 14, 0), (15, 15))) == 6
    with pytest.raises(ValueError, match="stride"):
        channel_activity({"x": np.zeros((1, 5, 5), bool)}, {}, Region.point(1, 1), (16, 16))


# ----------------------------------------------------------------------------- all three
def test_explain_region_end_to_end():
    model = busy_model(n_blocks=2)
    x = smooth_image(48, 64, seed=5)
    tr = interir.trace(model, x)
    res = explain_region(model, x, {"x": 40, "y": 10, "radius": 5}, trace=tr, top_k=7, steps=2, max_side=32)
    assert res.attribution.map.shape == (48, 64)
    assert res.attribution.params["resolution"] == [24, 32]
    assert len(res.change.region) == len(tr.iterations) == 3
    assert len(res.channels) == 7 and all(c.layer in tr.masks for c in res.channels)
    regions = [c.region for c in res.channels]
    assert regions == sorted(regions, reverse=True)
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d) == {"region", "attribution", "change", "channels", "seconds"}
    assert "trace" not in res.seconds
    fresh = explain_region(model, x, Region.point(40, 10, 5), steps=2, max_side=32, top_k=7)
    assert "trace" in fresh.seconds
    np.testing.assert_allclose(fresh.change.region, res.change.region, rtol=1e-5)
    assert [(c.layer, c.channel) for c in fresh.channels] == [(c.layer, c.channel) for c in res.channels]
