"""viz/: pure functions from a trace to figures, the embedding placement and the HTML report,
plus the ``interir report`` command. Small synthetic traces and a tiny random model only."""
from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import interir
import interir.imageio
from interir.errors import InterIRError
from viz import compact_trace, parse_layer
from viz.compact import to_uint8_hwc
from interir.reference import Reference, load_reference, nn_distance_p95, place, save_reference, weights_hash
from viz.images import (channel_grid, diff_image, fit_pca, heat_overlay, mask_overlay, pca_rgb,
                        resize_max, upsample_nearest, upscale_to)
from viz.plots import (attention_figure, channel_rank_figure, combo_label, embedding_figure,
                       from_typed_array, iteration_curves, iteration_curves_json, matrices_figure,
                       singular_values, to_figure, to_json)
from viz.report import build_report

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- fixtures
def fake_trace(n_iter: int = 3, C: int = 4, H: int = 20, W: int = 28, seed: int = 0) -> SimpleNamespace:
    """A hand-built object with the Trace attributes (h, w = H/4, W/4)."""
    g = torch.Generator().manual_seed(seed)
    h, w = H // 4, W // 4
    its = [SimpleNamespace(image=torch.rand(1, 3, H, W, generator=g), I=torch.randn(1, C, h, w, generator=g),
                           A=torch.randn(1, C, h, h, generator=g), B=torch.randn(1, C, w, w, generator=g),
                           Lambda=torch.randn(1, C, h, w, generator=g), fidelity=1.0 / (k + 1),
                           step_norm=0.5 ** k) for k in range(n_iter)]
    names = ["blocks.0.resm.ep_v.conv2", "blocks.0.mum.ep.conv2", "blocks.1.resm.ep_v.conv2",
             "final_resm.ep_f.conv2"]
    masks = {n: (torch.rand(1, 2 * C, h, w, generator=g) > 0.3).to(torch.uint8) for n in names}
    att = {n: torch.softmax(torch.randn(1, 2 * C, 9, generator=g), -1).reshape(1, 2 * C, 3, 3) for n in names}
    tau = {n: torch.randn(2 * C, generator=g) * 0.1 for n in names}
    return SimpleNamespace(input=torch.rand(1, 3, H, W, generator=g), output=its[-1].image, iterations=its,
                           masks=masks, attention=att, tau=tau, embedding=torch.randn(24, generator=g),
                           config={"preset": "fake", "n_blocks": n_iter - 1, "channels": C},
                           summary=lambda: {"n_iterations": n_iter})


@pytest.fixture(scope="module")
def real_trace():
    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=2, channels=8).eval()
    x = torch.rand(1, 3, 30, 42)
    return model, interir.trace(model, x)


def make_reference(n_per: int = 6, dim: int = 5, seed: int = 0) -> Reference:
    """Three well separated clusters, one per combo, with known 2-D coordinates."""
    rng = np.random.default_rng(seed)
    combos = ["haze", "rain", "noise"]
    centres = np.eye(3, dim) * 10.0
    emb = np.concatenate([centres[i] + rng.normal(0, 0.3, (n_per, dim)) for i in range(3)]).astype(np.float32)
    coords = np.concatenate([np.full((n_per, 2), 10.0 * i) + rng.normal(0, 0.1, (n_per, 2))
                             for i in range(3)]).astype(np.float32)
    labels = np.repeat(np.arange(3), n_per)
    mean, std = emb.mean(0), emb.std(0)
    return Reference(embeddings=emb, coords=coords, labels=labels, combos=combos,
                     levels=np.zeros((emb.shape[0], 3), np.float32), sources=["src"] * emb.shape[0],
                     thumbs=np.zeros((emb.shape[0], 8, 8, 3), np.uint8), weights_hash="abc",
                     mean=mean, std=std, nn_dist_p95=nn_distance_p95(emb, mean, std))


# ----------------------------------------------------------------------------- compact trace
def test_parse_layer_is_generic():
    a = parse_layer("blocks.12.resm.ep_v.conv2")
    assert (a.group, a.rest, a.index) == ("blocks.12", "resm.ep_v.conv2", 12)
    b = parse_layer("final_resm.ep_h_f.conv2")
    assert (b.group, b.rest, b.index) == ("final_resm", "ep_h_f.conv2", None)
    c = parse_layer("stages.3")
    assert (c.group, c.rest, c.index) == ("stages.3", "", 3)


def test_compact_trace_keeps_values_and_packs_masks():
    tr = fake_trace()
    ct = compact_trace(tr, name="x.png")
    assert ct.n_iter == 3 and ct.images.shape == (3, 20, 28, 3) and ct.images.dtype == np.uint8
    assert ct.A.dtype == np.float16 and ct.A.shape == (3, 4, 5, 5) and ct.B.shape == (3, 4, 7, 7)
    np.testing.assert_allclose(ct.A[1].astype(np.float32), tr.iterations[1].A[0].numpy(), rtol=1e-3, atol=1e-3)
    for name, m in tr.masks.items():
        np.testing.assert_array_equal(ct.mask(name), m[0].numpy().astype(bool))
        np.testing.assert_allclose(ct.mask_rate[name], m[0].float().mean((1, 2)).numpy(), rtol=1e-6)
    assert list(ct.groups()) == ["blocks.0", "blocks.1", "final_resm"]
    assert ct.groups()["blocks.0"] == ["blocks.0.resm.ep_v.conv2", "blocks.0.mum.ep.conv2"]
    np.testing.assert_array_equal(ct.images[2], to_uint8_hwc(tr.iterations[2].image))
    assert ct.nbytes() < 20_000


def test_compact_trace_from_torch_equals_from_numpy_with_channels_last_masks():
    """The torch fast path (float16 by torch, masks made contiguous and counted by torch) gives
    exactly the arrays the numpy path gives, for bool channels-last masks as the model makes."""
    tr = fake_trace()
    tr.masks = {n: m.bool().contiguous(memory_format=torch.channels_last) for n, m in tr.masks.items()}
    as_numpy = SimpleNamespace(**{**vars(tr), "masks": {n: m.numpy() for n, m in tr.masks.items()},
                                  "iterations": [SimpleNamespace(**{k: (v.numpy() if torch.is_tensor(v) and k != "image"
                                                                       else v) for k, v in vars(it).items()})
                                                 for it in tr.iterations]})
    a, b = compact_trace(tr), compact_trace(as_numpy)
    for key in ("I", "A", "B", "Lambda"):
        assert getattr(a, key).dtype == np.float16
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    for name in tr.masks:
        np.testing.assert_array_equal(a.mask_bits[name], b.mask_bits[name])
        np.testing.assert_array_equal(a.mask_rate[name], b.mask_rate[name])
        np.testing.assert_array_equal(a.mask(name), tr.masks[name][0].numpy())
    # channels-last masks are packed as they lie in memory ((h, w, C) order), plain ones as (C, h, w):
    # the same masks and rates either way
    plain = compact_trace(SimpleNamespace(**{**vars(tr), "masks": {n: m.contiguous() for n, m in tr.masks.items()}}))
    assert set(a.mask_order.values()) == {"hwc"} and plain.mask_order == {}
    for name in tr.masks:
        assert a.mask(name).flags.c_contiguous and a.mask(name).dtype == bool
        np.testing.assert_array_equal(a.mask(name), plain.mask(name))
        np.testing.assert_array_equal(a.mask_rate[name], plain.mask_rate[name])
        assert not np.array_equal(a.mask_bits[name], plain.mask_bits[name])  # the two orders differ


def test_to_uint8_matches_imageio():
    x = np.linspace(0, 1, 3 * 4 * 5, dtype=np.float32).reshape(4, 5, 3)
    np.testing.assert_array_equal(to_uint8_hwc(x), interir.imageio.to_uint8(x))
    np.testing.assert_array_equal(to_uint8_hwc(torch.from_numpy(x).permute(2, 0, 1)[None]), interir.imageio.to_uint8(x))


def test_to_uint8_tensor_path_equals_numpy_path_and_leaves_the_tensor():
    """Tensors convert in torch; the bytes equal the numpy path's, NaN/inf/out-of-range included."""
    x = torch.linspace(-0.3, 1.3, 3 * 6 * 7).reshape(1, 3, 6, 7)
    x[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), float("-inf")])
    before = x.clone()
    out = to_uint8_hwc(x)
    assert out.dtype == np.uint8 and out.shape == (6, 7, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, to_uint8_hwc(x.numpy()[0].transpose(1, 2, 0)))
    assert torch.equal(x.nan_to_num(), before.nan_to_num())  # the trace's image is not changed
    assert list(out[0, 0, 0:1]) + list(out[0, 1:3, 0]) == [0, 255, 0]


def test_metrics_against_reference_and_lazy_ssim():
    from interir.metrics import psnr, ssim

    ct = compact_trace(fake_trace())
    ref = (np.random.default_rng(1).random((20, 28, 3)) * 255).astype(np.uint8)
    ct.with_reference(ref)
    assert ct.psnr[1] == pytest.approx(psnr(ct.images[1], ref))
    assert ct.input_psnr == pytest.approx(psnr(ct.input, ref))
    assert np.isnan(ct.ssim).all() and ct.input_ssim is None  # SSIM is deferred (slow)
    ct.complete_ssim()
    assert ct.ssim[0] == pytest.approx(ssim(ct.images[0], ref))
    assert ct.ssim[-1] == pytest.approx(ssim(ct.images[-1], ref))
    assert ct.input_ssim == pytest.approx(ssim(ct.input, ref))
    with pytest.raises(ValueError):
        ct.with_reference(ref[:10])


def test_summary_matches_trace_summary(real_trace):
    _, tr = real_trace
    ours, theirs = compact_trace(tr).summary, json.loads(json.dumps(tr.summary()))
    assert set(ours) == set(theirs)
    for key, val in theirs.items():
        if isinstance(val, dict) and key != "config":
            assert set(ours[key]) == set(val)
            for name in val:
                assert ours[key][name] == pytest.approx(val[name], rel=1e-5, abs=1e-7), (key, name)
        elif isinstance(val, list) and val and isinstance(val[0], float):
            assert ours[key] == pytest.approx(val, rel=1e-6), key
        else:
            assert ours[key] == val, key


def test_to_arrays_has_trace_layout(real_trace):
    _, tr = real_trace
    ct = compact_trace(tr)
    ours, theirs = ct.to_arrays(), tr.to_arrays()
    assert set(theirs) <= set(ours)
    for key, val in theirs.items():
        assert ours[key].shape == val.shape, key
    np.testing.assert_allclose(ours["iterations.1.A"], theirs["iterations.1.A"], rtol=2e-3, atol=1e-3)
    assert np.abs(ours["output"] - np.clip(theirs["output"], 0, 1)).max() <= 0.5 / 255 + 1e-6


# ----------------------------------------------------------------------------- images
def test_diff_image_scale_and_gamma():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255
    img, scale = diff_image(b, a, scale=1.0)
    assert scale == 1.0
    from viz.images import colormap

    lut = colormap("magma")
    np.testing.assert_array_equal(img[0, 0], lut[255])
    np.testing.assert_array_equal(img[1, 1], lut[0])
    b[0, 0] = 64  # 0.251 -> sqrt 0.501 -> index 127
    img, _ = diff_image(b, a, scale=1.0, gamma=0.5)
    np.testing.assert_array_equal(img[0, 0], lut[int(np.sqrt(64 / 255) * 255)])


def test_upsample_nearest_maps_pixels_to_feature_cells():
    m = np.arange(6).reshape(2, 3)
    up = upsample_nearest(m, 7, 11)  # e.g. a 7x11 image padded to 8x12 -> 2x3 features
    assert up.shape == (7, 11)
    assert up[0, 0] == 0 and up[3, 3] == 0 and up[4, 4] == 4 and up[6, 10] == 5 and up[0, 8] == 2


def test_mask_and_heat_overlay_blend_exactly():
    img = np.full((8, 8, 3), 100, np.uint8)
    mask = np.zeros((2, 2), bool)
    mask[0, 1] = True
    out = mask_overlay(img, mask, opacity=0.5, color=(200, 0, 0))
    np.testing.assert_array_equal(out[0, 7], [150, 50, 50])
    np.testing.assert_array_equal(out[7, 0], [100, 100, 100])
    out = heat_overlay(img, np.ones((2, 2)), opacity=0.0)
    np.testing.assert_array_equal(out, img)


def test_channel_grid_and_pca_rgb():
    arr = np.random.default_rng(0).normal(size=(5, 10, 12)).astype(np.float32)
    grid = channel_grid(arr, tile=12, pad=2, labels=False)  # no pooling
    assert grid.shape == (2 * 12 + 2, 3 * 14 + 2, 3) and grid.dtype == np.uint8
    big = channel_grid(arr[:2], tile=25, pad=1, labels=False, ncols=2)  # enlarged 2x (nearest)
    assert big.shape == (20 + 2, 2 * (24 + 1) + 1, 3)
    np.testing.assert_array_equal(big[1:3, 1:3], np.broadcast_to(big[1, 1], (2, 2, 3)))
    # a feature map whose only variation is along channel 2: the first component is channel 2
    rng = np.random.default_rng(0)
    f = np.zeros((4, 16, 16), np.float32)
    f[2] = rng.normal(size=(16, 16)) * 5
    f += rng.normal(size=f.shape).astype(np.float32) * 0.01
    basis = fit_pca(f)
    assert abs(basis["components"][0, 2]) > 0.99
    rgb = pca_rgb(f, basis)
    assert np.corrcoef(rgb[..., 0].ravel(), f[2].ravel())[0, 1] > 0.95


def test_resize_and_upscale():
    img = np.zeros((300, 1200, 3), np.uint8)
    assert resize_max(img, 600).shape == (150, 600, 3)
    assert resize_max(img, 2000) is img
    assert upscale_to(np.zeros((10, 20, 3), np.uint8), 100).shape == (50, 100, 3)


# ----------------------------------------------------------------------------- plots
def traces(fig, kind=None):
    return [t for t in fig["data"] if kind is None or t.get("type") == kind]


def test_figures_are_valid_plotly():
    ct = compact_trace(fake_trace())
    ct.with_reference(np.zeros_like(ct.input))
    att = ct.attention[ct.layers[0]]
    for fig in (iteration_curves(ct, 1), matrices_figure(ct, 1, None), attention_figure(att),
                channel_rank_figure(ct.mask_rate[ct.layers[0]], ct.tau[ct.layers[0]], 0),
                embedding_figure(make_reference(), None)):
        to_figure(fig)  # plotly's own validation raises on any invalid property
        json.loads(to_json(fig))


def test_iteration_curves_mark_k_and_fast_path_moves_only_the_marker():
    ct = compact_trace(fake_trace(n_iter=4))
    fig = iteration_curves(ct, 2)
    sel = [t for t in fig["data"] if t["name"].startswith("sel:")]
    assert [t["name"] for t in sel] == ["sel:fidelity", "sel:step"]
    assert sel[0]["x"] == [2] and sel[0]["y"][0] == pytest.approx(1 / 3)
    js = json.loads(iteration_curves_json(ct, 3))
    marks = [t for t in js["data"] if t.get("name") == "sel:step"]
    assert marks[0]["x"] == [3] and marks[0]["y"][0] == pytest.approx(0.125)
    lines = [s for s in js["layout"]["shapes"] if s.get("name") == "k-line"]
    assert len(lines) == 2 and all(s["x0"] == 3 == s["x1"] for s in lines)
    assert [t for t in js["data"] if t["name"] == "fidelity"][0]["y"] == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4])
    ct.with_reference(np.zeros_like(ct.input))  # metrics change: the cached figure is rebuilt
    js = json.loads(iteration_curves_json(ct, 0))
    assert len([t for t in js["data"] if t["name"].startswith("sel:")]) == 4
    assert js["layout"]["yaxis"]["type"] == "log"


def test_matrices_figure_shows_the_matrix_and_its_spectrum():
    ct = compact_trace(fake_trace())
    fig = matrices_figure(ct, 1, 2)
    heat = traces(fig, "heatmap")
    np.testing.assert_allclose(from_typed_array(heat[0]["z"]), ct.A[1, 2].astype(np.float32))
    spectra = [t for t in traces(fig, "scatter") if t["name"] == "k = 1"]
    np.testing.assert_allclose(from_typed_array(spectra[0]["y"]),
                               np.linalg.svd(ct.A[1, 2].astype(np.float64), compute_uv=False), rtol=1e-6)
    mean = traces(matrices_figure(ct, 0, None), "heatmap")[1]
    np.testing.assert_allclose(from_typed_array(mean["z"]), ct.B[0].astype(np.float32).mean(0), rtol=1e-6)


def test_large_matrices_are_block_averaged():
    ct = compact_trace(fake_trace(H=20, W=1040))  # w = 260 > 128 -> 3x3 blocks
    heat = traces(matrices_figure(ct, 0, 1, max_side=128), "heatmap")[1]
    b = ct.B[0, 1].astype(np.float32)
    z = from_typed_array(heat["z"])
    assert z.shape == (86, 86) and heat["dx"] == 3
    assert z[0, 0] == pytest.approx(b[:3, :3].mean(), rel=1e-5)


def test_singular_values_match_numpy():
    m = np.random.default_rng(3).normal(size=(6, 6))
    np.testing.assert_allclose(singular_values(m), np.linalg.svd(m, compute_uv=False))


def test_attention_tiles_and_ranking():
    att = np.random.default_rng(0).random((6, 3, 3)).astype(np.float32)
    fig = attention_figure(att, order=[5, 4, 3, 2, 1, 0], selected=4, ncols=3)
    z = from_typed_array(fig["data"][0]["z"])
    np.testing.assert_allclose(z[0:3, 0:3], att[5])  # first tile = first in ranking
    np.testing.assert_allclose(z[4:7, 4:7], att[1])  # second row, second tile
    assert np.isnan(z[3, 0]) and len(fig["layout"]["shapes"]) == 1  # gap row; selected outlined
    rate = np.array([0.1, 0.9, 0.5])
    bars = channel_rank_figure(rate, np.array([1.0, 2.0, 3.0]), selected=1)["data"]
    assert bars[0]["x"] == ["#1 · ch 1", "#2 · ch 2", "#3 · ch 0"] and bars[1]["y"] == [2.0, 3.0, 1.0]
    assert bars[0]["marker"]["color"][0] != bars[0]["marker"]["color"][1]  # selected highlighted


def test_attention_grid_and_ranking_chart_agree_on_the_order():
    """Issue 11: the attention grid (row by row) and the ranking chart list channels in one order,
    with the same '#rank · ch c' labels; a selected channel beyond the shown tiles keeps its rank."""
    rng = np.random.default_rng(1)
    rate = rng.random(12)
    att = rng.random((12, 3, 3)).astype(np.float32)
    order = list(np.argsort(-rate, kind="stable"))
    tiles = [a["text"] for a in attention_figure(att, order, selected=int(order[-1]), max_tiles=4,
                                                 ncols=2)["layout"]["annotations"]]
    bars = channel_rank_figure(rate, None)["data"][0]["x"]
    assert tiles[:4] == bars[:4] and tiles[4] == bars[-1] == f"#12 · ch {order[-1]}"


def test_combo_labels():
    assert combo_label("haze_rain_noise") == "H + R + N" and combo_label("rain") == "R"
    assert combo_label("custom") == "custom"


# ----------------------------------------------------------------------------- embedding
def test_place_finds_the_right_cluster_and_interpolates():
    ref = make_reference()
    p = place(ref, ref.embeddings[7] + 0.01, k=4)  # inside the "rain" cluster
    assert p.combo == "rain" and p.confidence == pytest.approx(1.0)
    assert not p.out_of_distribution
    assert np.allclose(p.xy, (10, 10), atol=0.5)
    # half-way between two clusters: neighbours from both, position in between
    q = place(ref, (ref.embeddings[0] + ref.embeddings[6]) / 2, k=12)
    assert 0.3 < q.confidence < 0.8 and set(c for c, v in q.probs.items() if v > 0) == {"haze", "rain"}
    far = place(ref, np.full(5, 1000.0), k=3)
    assert far.out_of_distribution
    with pytest.raises(InterIRError, match="another model"):
        place(ref, np.zeros(7))


def test_reference_roundtrip_and_corrupt_file(tmp_path):
    ref = make_reference()
    path = save_reference(ref, tmp_path / "ref.npz")
    back = load_reference(path)
    np.testing.assert_array_equal(back.coords, ref.coords)
    assert back.combos == ref.combos and back.weights_hash == "abc"
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InterIRError, match="bad.npz"):
        load_reference(bad)
    with pytest.raises(InterIRError, match="not found"):
        load_reference(tmp_path / "missing.npz")


def test_embedding_figure_has_every_combo_and_the_user_point():
    ref = make_reference()
    p = place(ref, ref.embeddings[0], k=3)
    fig = embedding_figure(ref, p, thumbs=["data:image/png;base64,AAAA"] * len(ref))
    names = [t["name"] for t in fig["data"] if t.get("name")]
    assert names[:3] == ["H", "R", "N"] and names[-1] == "your image"
    assert fig["data"][0]["customdata"][0][0].startswith("data:image/png")
    star = fig["data"][-1]
    assert star["x"] == [p.xy[0]] and len(fig["data"]) == 3 + 3 + 1  # combos, neighbour lines, star


def test_weights_hash_changes_with_weights():
    torch.manual_seed(0)
    m = interir.build_model("tiny", n_blocks=1, channels=4)
    h1 = weights_hash(m)
    assert h1 == weights_hash(m)
    with torch.no_grad():
        next(m.parameters()).add_(1e-3)
    assert weights_hash(m) != h1


# ----------------------------------------------------------------------------- report
def test_report_is_self_contained(real_trace):
    _, tr = real_trace
    ct = compact_trace(tr, name="a<b>.png")
    ct.with_reference(np.zeros_like(ct.input))
    html = build_report(ct, make_reference(dim=tr.embedding.numel()))
    assert html.startswith("<!DOCTYPE html>") and "a&lt;b&gt;.png" in html
    for section in ("Iterations", "Degradation matrices", "Explainable convolution", "Degradation embedding"):
        assert f"<h2>{section}" in html
    assert html.count("Plotly.newPlot") >= 5  # curves, matrices, attention, ranking, embedding
    assert not re.search(r"<script[^>]+src=", html)  # nothing loaded from elsewhere
    assert "Diagnosis:" in html and "$" not in re.sub(r"<script.*?</script>", "", html, flags=re.S)


def test_report_for_standard_convolutions_says_so():
    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=1, channels=4, conv_type="standard").eval()
    tr = interir.trace(model, torch.rand(1, 3, 16, 16))
    ct = compact_trace(tr)
    assert not ct.has_masks
    html = build_report(ct, None, reference_note="none here")
    assert "standard convolutions" in html and "none here" in html


def test_report_cli(tmp_path, capsys):
    from interir.cli import main
    from interir.imageio import save_image

    torch.manual_seed(0)
    interir.save_pretrained(interir.build_model("tiny", n_blocks=1, channels=4), tmp_path / "w")
    img = np.random.default_rng(0).random((40, 52, 3)).astype(np.float32)
    save_image(img, tmp_path / "in.png")
    save_image(img * 0.5, tmp_path / "clean.png")
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "in.png"), "--out", str(out), "--weights", str(tmp_path / "w"),
                 "--reference", str(tmp_path / "clean.png")]) == 0
    text = out.read_text()
    assert "PSNR" in text and "Plotly.newPlot" in text
    capsys.readouterr()
    (tmp_path / "junk.png").write_text("not an image")
    for args, msg in [(["report", str(tmp_path / "junk.png"), "--out", str(out), "--weights", str(tmp_path / "w")],
                       "not a recognised image"),
                      (["report", str(tmp_path / "in.png"), "--out", str(tmp_path / "no" / "r.html"),
                        "--weights", str(tmp_path / "w")], "does not exist"),
                      (["report", str(tmp_path / "in.png"), "--out", str(out), "--weights", str(tmp_path / "nope")],
                       "weights folder does not exist")]:
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1 and "Traceback" not in err


# ----------------------------------------------------------------------------- issue 11/12 additions
def test_change_map_at_k0_has_its_own_scale_and_is_not_saturated():
    from viz.images import change_frame, change_scales

    ft = fake_trace(n_iter=3)
    ct = compact_trace(ft)
    rng = np.random.default_rng(0)
    # k = 0 moves every pixel a lot away from the input (as dehazing does), later steps a little
    ct.images[0] = np.clip(ct.input.astype(int) + 60 + rng.integers(-20, 20, ct.input.shape), 0, 255).astype(np.uint8)
    ct.images[1] = np.clip(ct.images[0].astype(int) + rng.integers(-3, 4, ct.input.shape), 0, 255).astype(np.uint8)
    ct.images[2] = np.clip(ct.images[1].astype(int) + rng.integers(-2, 3, ct.input.shape), 0, 255).astype(np.uint8)
    first, rest = change_scales(ct)
    assert first > 5 * rest
    for k in range(3):
        rgb, scale = change_frame(ct, k)
        assert scale == (first if k == 0 else rest)
        top = np.all(rgb == rgb.reshape(-1, 3)[np.argmax(rgb.sum(-1))], axis=-1).mean()
        assert top < (0.05 if k == 0 else 0.1), f"k = {k}: {top:.0%} of the map at full brightness"


def test_curve_notes_say_what_each_curve_measures_and_flag_anti_optimiser_moves():
    from viz.text import curve_notes

    ct = compact_trace(fake_trace(n_iter=3))
    ct.fidelity = np.array([1.0, 0.5, 0.25])
    ct.step_norm = np.array([0.5, 0.3, 0.1])
    calm = curve_notes(ct)
    assert "Data fidelity" in calm and "Relative step" in calm and "⚠️" not in calm and "No clean reference" in calm
    ct.fidelity = np.array([1.0, 2.0, 3.0])
    ref = ct.input.copy()
    ct.with_reference(ref)
    ct.psnr = np.array([30.0, 25.0, 20.0])
    notes = curve_notes(ct)
    assert "**rises**" in notes and "**falls** in 2 of 2 steps (by up to 5.00 dB)" in notes
    assert "worse than the degraded input" in notes
    ct.psnr = np.array([30.0, 30.03, 30.01])  # a 0.02 dB dip: flat by the evaluation's tolerance
    notes = curve_notes(ct)
    assert "dips in 1 of 2 steps, by at most 0.02 dB" in notes and "**falls**" not in notes.split("**SSIM**")[0]


def test_flat_tolerance_is_the_evaluations():
    from interir.eval import MONOTONE_TOL_DB
    from viz.text import FLAT_DB

    assert FLAT_DB == MONOTONE_TOL_DB


def test_pretty_bytes_uses_the_units_of_gradios_file_list():
    from viz.images import pretty_bytes

    assert pretty_bytes(2662) == "2.6 KB" and pretty_bytes(13_500_000) == "12.9 MB" and pretty_bytes(10) == "10.0 B"
    assert pretty_bytes(3328) == "3.3 KB"  # 3.25 rounds up, as toFixed(1) in the browser


def test_one_writer_for_both_bundles(real_trace, tmp_path, monkeypatch):
    import sys

    T = sys.modules["interir.trace"]  # (interir.trace the attribute is the trace function)

    _, tr = real_trace
    calls = []
    real = T.write_bundle
    monkeypatch.setattr(T, "write_bundle", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    import viz.compact as VC

    monkeypatch.setattr(VC, "write_bundle", T.write_bundle)
    tr.save_npz(tmp_path / "full.npz")
    compact_trace(tr).save_npz(tmp_path / "compact.npz")
    assert calls == [tmp_path / "full.npz", tmp_path / "compact.npz"]
    with np.load(tmp_path / "full.npz") as a, np.load(tmp_path / "compact.npz") as b:
        assert set(a.files) == set(b.files)
        assert a["iterations.1.A"].dtype == np.float32 and b["iterations.1.A"].dtype == np.float16
        assert json.loads(str(a["summary_json"]))["n_iterations"] == len(tr.iterations)


def test_trace_reports_progress_once_per_unrolled_iteration():
    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=2, channels=4).eval()
    seen = []
    tr = interir.trace(model, torch.rand(1, 3, 16, 20), progress=lambda k, n: seen.append((k, n)))
    assert seen == [(0, 3), (1, 3), (2, 3)] == [(k, len(tr.iterations)) for k in range(3)]


def test_reference_set_is_built_found_and_checked_by_the_package(tmp_path, monkeypatch, capsys):
    import interir.reference as R
    from interir.cli import main

    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=1, channels=4).eval()
    interir.save_pretrained(model, tmp_path / "w")
    monkeypatch.setenv("INTERIR_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "ref.npz"
    assert main(["build-reference", "--weights", str(tmp_path / "w"), "--out", str(out), "--size", "16",
                 "--seeds", "1"]) == 0
    loaded = interir.load_pretrained(tmp_path / "w")
    ref, where = R.find_reference(R.weights_hash(loaded), out)
    assert ref is not None and len(ref) == 42 and ref.weights_hash == R.weights_hash(loaded)
    other = interir.build_model("tiny", n_blocks=1, channels=4)
    none, why = R.find_reference(R.weights_hash(other), out)
    assert none is None and "other weights" in why
    capsys.readouterr()
    assert main(["build-reference", "--weights", str(tmp_path / "w"), "--out", str(tmp_path / "r.txt")]) == 2
    assert ".npz" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the iteration viewer
def _decode_uri(uri: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_indexed_png_is_the_colour_mapped_levels_exactly():
    from viz.images import colormap, indexed_png_data_uri

    levels = np.random.default_rng(0).integers(0, 256, (23, 37)).astype(np.uint8)
    uri = indexed_png_data_uri(levels, "magma")
    assert uri.startswith("data:image/png;base64,")
    np.testing.assert_array_equal(_decode_uri(uri), colormap("magma")[levels])


def test_diff_levels_index_the_colour_map_of_diff_image():
    from viz.images import colormap, diff_levels

    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (16, 24, 3)).astype(np.uint8) for _ in range(2))
    for scale, gamma in ((None, 1.0), (0.2, 0.5)):
        levels, s1 = diff_levels(a, b, scale, gamma)
        rgb, s2 = diff_image(a, b, scale, gamma=gamma)
        assert s1 == s2 and levels.dtype == np.uint8
        np.testing.assert_array_equal(colormap("magma")[levels], rgb)


def test_iteration_viewer_holds_every_k_and_shows_one():
    from viz.images import change_frame
    from viz.text import step_text
    from viz.viewer import frame_uris, iteration_viewer

    ct = compact_trace(fake_trace(n_iter=4))
    frames = [frame_uris(ct, k) for k in range(4)]
    for k, (img, change) in enumerate(frames):
        assert img.startswith("data:image/jpeg") and change.startswith("data:image/png")
        np.testing.assert_array_equal(_decode_uri(change), change_frame(ct, k)[0])  # lossless
        err = [np.abs(_decode_uri(img).astype(int) - ct.images[j]).mean() for j in range(4)]
        assert int(np.argmin(err)) == k and err[k] < 0.5 * min(e for j, e in enumerate(err) if j != k)
    texts = [step_text(ct, k) for k in range(4)]
    assert texts[3].startswith("**k = 3 (the output)**") and "compared with the input" in texts[0]
    view = iteration_viewer(frames, texts, 1)
    for pane in ("img-k", "diff-k", "step-info"):
        assert view.count(f'id="{pane}"') == 1
    shown = re.findall(r'<(?:img|p) data-k="(\d)"(?![^>]*hidden)', view)
    assert shown == ["1", "1", "1"]  # iteration 1's image, change map and step line
    assert len(re.findall(r'data-k="\d"[^>]*hidden', view)) == 3 * 3
    assert "<strong>k = 1</strong>" in view and "|Δ|" in view
    assert iteration_viewer(frames, texts).count('data-k="3" src') == 2  # default: the last k
    with pytest.raises(ValueError, match="4 frames but 3"):
        iteration_viewer(frames, texts[:3])


def test_iteration_viewer_escapes_text_and_has_an_empty_state():
    from viz.viewer import EMPTY, iteration_viewer, step_html

    assert step_html("**a < b** & <script>") == "<strong>a &lt; b</strong> &amp; &lt;script&gt;"
    empty = iteration_viewer([], [])
    assert "<img" not in empty and empty.count(EMPTY) == 2 and 'id="step-info"' in empty


def test_brightness_line():
    from viz.text import brightness_line

    inp = np.full((4, 5, 3), 100, np.uint8)
    out = np.full((4, 5, 3), 90, np.uint8)
    assert brightness_line(inp, out) == "Mean brightness (0–255): input 100.0 → output 90.0."
    line = brightness_line(inp, out, np.full((4, 5, 3), 99, np.uint8))
    assert line.endswith("clean reference 99.0: ⚠️ the output is 9.0/255 darker than the clean image.")
    line = brightness_line(inp, out, np.full((4, 5, 3), 89, np.uint8))  # within the 2/255 target
    assert line.endswith("the output is 1.0/255 brighter than the clean image.") and "⚠️" not in line
    assert brightness_line(inp, out, out).endswith("clean reference 90.0.")
