"""The classical DCP + NLM baseline, interir.eval.evaluate / to_markdown and `interir eval`."""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

import interir
from interir import classical
from interir.classical import classical_restore
from interir.cli import main
from interir.errors import InterIRError
from interir.eval import combo_label, evaluate, to_json, to_markdown
from interir.imageio import load_image, save_image
from interir.metrics import psnr, ssim

CELL = re.compile(r"^(\d+\.\d{2}|inf)/\d\.\d{3}$")


# ---------------------------------------------------------------- classical baseline
def _smooth_image(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = gaussian_filter(rng.random((size, size, 3)), sigma=(size / 24, size / 24, 0))
    img = (img - img.min()) / (img.max() - img.min())
    return 0.05 + 0.75 * img  # keep away from 0/1 like a natural photo


def _hazy(clean: np.ndarray, seed: int) -> np.ndarray:
    """DCP imaging model I*t + A*(1-t) with a smooth depth map."""
    h, w = clean.shape[:2]
    rng = np.random.default_rng(seed)
    depth = gaussian_filter(rng.random((h, w)), sigma=h / 8)
    depth = (depth - depth.min()) / (depth.max() - depth.min()) + np.linspace(0.3, 1.0, h)[:, None]
    t = np.exp(-1.0 * depth)[..., None]
    airlight = np.array([0.93, 0.94, 0.96])
    return clean * t + airlight * (1 - t)


def test_classical_dehazes_synthetic_haze():
    clean = _smooth_image(96, 0)
    hazy = _hazy(clean, 1)
    out = classical_restore(hazy)
    assert out.shape == clean.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    before, after = psnr(hazy, clean), psnr(out, clean)
    assert after > before + 3.0, (before, after)
    assert ssim(out, clean) > ssim(hazy, clean)


def test_classical_is_deterministic():
    hazy = _hazy(_smooth_image(64, 2), 3)
    noisy = np.clip(hazy + np.random.default_rng(4).normal(0, 0.05, hazy.shape), 0, 1)
    a, b = classical_restore(noisy), classical_restore(noisy.copy())
    assert np.array_equal(a, b)
    assert not np.array_equal(a, noisy.astype(np.float32))  # it did something


def test_classical_denoises_noise():
    clean = _smooth_image(64, 5)
    noisy = np.clip(clean + np.random.default_rng(6).normal(0, 20 / 255, clean.shape), 0, 1)
    # NLM alone (the DCP step is a no-op test here): the denoiser must help a noisy image
    assert psnr(classical.denoise_nlm(noisy), clean) > psnr(noisy, clean) + 2.0


def test_noise_sigma_estimate():
    rng = np.random.default_rng(7)
    flat = np.full((128, 128, 3), 0.5)
    for sigma in (0.02, 0.08):
        est = classical.estimate_noise_sigma(flat + rng.normal(0, sigma, flat.shape))
        assert est == pytest.approx(sigma, rel=0.1)
    assert classical.estimate_noise_sigma(flat) == 0.0


def test_guided_filter_preserves_edges_and_smooths_flat_noise():
    rng = np.random.default_rng(8)
    step = np.zeros((64, 64))
    step[:, 32:] = 1.0
    # self-guided with small eps: a strong edge survives
    out = classical.guided_filter(step, step, radius=4, eps=1e-4)
    assert np.abs(out - step).max() < 0.05
    # weak noise (variance << eps) is smoothed towards the local mean
    noise = 0.5 + rng.normal(0, 0.01, (64, 64))
    out = classical.guided_filter(noise, noise, radius=4, eps=1e-2)
    assert out.std() < 0.3 * noise.std()


def test_classical_speed_256():
    img = _hazy(_smooth_image(256, 9), 10)
    img = np.clip(img + np.random.default_rng(11).normal(0, 0.04, img.shape), 0, 1)
    classical_restore(img[:32, :32])  # warm up imports
    t0 = time.perf_counter()
    classical_restore(img)
    assert time.perf_counter() - t0 < 2.0  # ~0.1 s measured on one shared core


@pytest.mark.parametrize("bad", [np.zeros((8, 8)), np.zeros((8, 8, 4)), np.zeros((0, 8, 3)),
                                 np.full((8, 8, 3), np.nan), [[1, 2, 3]]])
def test_classical_bad_input(bad):
    with pytest.raises(InterIRError):
        classical_restore(bad)


def test_classical_tiny_images():
    for shape in [(1, 1, 3), (2, 5, 3), (7, 3, 3)]:
        out = classical_restore(np.random.default_rng(0).random(shape))
        assert out.shape == shape and np.isfinite(out).all()


# ---------------------------------------------------------------- evaluate / to_markdown
def test_combo_label():
    assert combo_label("haze_rain_noise") == "H + R + N"
    assert combo_label("rain_noise") == "R + N"
    assert combo_label("noise") == "N"
    assert combo_label("Rain100H") == "Rain100H"


def _write_set(root: Path, combos: list[str], n: int = 2, size: int = 32, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for combo in combos:
        for i in range(n):
            clean = _smooth_image(size, int(rng.integers(1 << 30)))
            deg = clean
            if "haze" in combo:
                deg = _hazy(deg, int(rng.integers(1 << 30)))
            if "noise" in combo:
                deg = np.clip(deg + rng.normal(0, 0.06, deg.shape), 0, 1)
            if "rain" in combo:
                deg = deg.copy()
                deg[:, ::7] = np.clip(deg[:, ::7] + 0.4, 0, 1)
            for sub, img in (("input", deg), ("target", clean)):
                (root / combo / sub).mkdir(parents=True, exist_ok=True)
                save_image(img, root / combo / sub / f"img{i}.png")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=1, channels=8)
    path = tmp_path_factory.mktemp("weights") / "tiny"
    interir.save_pretrained(model, path)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evalset")
    _write_set(root, ["noise", "haze_rain"])  # created out of COMBOS order on purpose
    return root


@pytest.fixture(scope="module")
def result(tiny_weights, data_dir) -> dict:
    model = interir.load_pretrained(tiny_weights)
    return evaluate(model, data_dir, weights=str(tiny_weights))


def test_evaluate_schema_and_order(result, data_dir, tiny_weights):
    assert list(result["combos"]) == ["haze_rain", "noise"]  # COMBOS order
    for block in (result, result["input"], result["classical"]):
        assert set(block) >= {"combos", "average"}
        for entry in block["combos"].values():
            assert set(entry) == {"psnr", "ssim", "n"}
            assert entry["n"] == 2
            assert isinstance(entry["psnr"], float) and isinstance(entry["ssim"], float)
            assert math.isfinite(entry["psnr"]) and -1.0 <= entry["ssim"] <= 1.0
        # average = unweighted mean over combos
        for key in ("psnr", "ssim"):
            vals = [e[key] for e in block["combos"].values()]
            assert block["average"][key] == pytest.approx(np.mean(vals), abs=1e-12)
    meta = result["meta"]
    assert meta["weights"] == str(tiny_weights) and meta["data"] == str(data_dir)
    assert meta["y_channel"] is False and meta["crop_border"] == 0 and meta["n_images"] == 4


def test_evaluate_numbers_match_direct_computation(result, data_dir, tiny_weights):
    model = interir.load_pretrained(tiny_weights)
    for combo in ("haze_rain", "noise"):
        p_in, s_in, p_model, p_cls = [], [], [], []
        for i in range(2):
            inp = load_image(data_dir / combo / "input" / f"img{i}.png")
            tgt = load_image(data_dir / combo / "target" / f"img{i}.png")
            p_in.append(psnr(inp, tgt))
            s_in.append(ssim(inp, tgt))
            with torch.inference_mode():
                y = model(torch.from_numpy(inp).permute(2, 0, 1)[None]).clamp(0, 1)
            p_model.append(psnr(y, tgt))
            p_cls.append(psnr(classical_restore(inp), tgt))
        assert result["input"]["combos"][combo]["psnr"] == pytest.approx(np.mean(p_in), abs=1e-9)
        assert result["input"]["combos"][combo]["ssim"] == pytest.approx(np.mean(s_in), abs=1e-9)
        assert result["combos"][combo]["psnr"] == pytest.approx(np.mean(p_model), abs=1e-6)
        assert result["classical"]["combos"][combo]["psnr"] == pytest.approx(np.mean(p_cls),
                                                                             abs=1e-9)
    # the baseline really restores the hazy combo
    assert result["classical"]["combos"]["haze_rain"]["psnr"] > \
        result["input"]["combos"]["haze_rain"]["psnr"]


def test_evaluate_is_deterministic(result, tiny_weights, data_dir):
    again = evaluate(interir.load_pretrained(tiny_weights), data_dir, weights=str(tiny_weights))
    assert again == result


def test_evaluate_options(tiny_weights, data_dir):
    model = interir.load_pretrained(tiny_weights)
    model.train()
    res = evaluate(model, data_dir, y_channel=True, crop_border=2, max_images=1,
                   include_classical=False)
    assert model.training  # mode restored
    assert "classical" not in res
    assert all(e["n"] == 1 for e in res["combos"].values())
    assert res["meta"]["n_images"] == 2 and res["meta"]["y_channel"] is True
    inp = load_image(data_dir / "noise" / "input" / "img0.png")
    tgt = load_image(data_dir / "noise" / "target" / "img0.png")
    assert res["input"]["combos"]["noise"]["psnr"] == pytest.approx(
        psnr(inp, tgt, crop_border=2, y_channel=True), abs=1e-9)
    md = to_markdown(res)
    assert "Classical" not in md and "Y channel" in md


def test_to_markdown_table(result):
    md = to_markdown(result)
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["Method", "H + R", "N", "Average"]
    rows = {ln.strip("|").split("|")[0].strip(): [c.strip() for c in ln.strip("|").split("|")[1:]]
            for ln in lines[2:]}
    assert set(rows) == {"InterIR (tiny)", "Degraded input", "Classical (DCP + NLM)"}
    for cells in rows.values():
        assert len(cells) == 3 and all(CELL.match(c) for c in cells), cells
    avg = result["input"]["average"]
    assert rows["Degraded input"][2] == f"{avg['psnr']:.2f}/{avg['ssim']:.3f}"


def test_plain_paired_folder_and_inf_psnr(tmp_path, tiny_weights):
    root = tmp_path / "MySet"
    img = _smooth_image(24, 3)
    for sub in ("input", "target"):
        (root / sub).mkdir(parents=True)
        save_image(img, root / sub / "a.png")  # input identical to target
    res = evaluate(interir.load_pretrained(tiny_weights), root, include_classical=False)
    assert list(res["combos"]) == ["MySet"]
    assert res["input"]["combos"]["MySet"]["psnr"] == math.inf
    assert res["input"]["combos"]["MySet"]["ssim"] == pytest.approx(1.0)
    parsed = json.loads(to_json(res))  # strict JSON: inf written as null
    assert parsed["input"]["combos"]["MySet"]["psnr"] is None
    assert "| MySet | Average |" in to_markdown(res)
    assert "inf/1.000" in to_markdown(res)


def test_evaluate_errors(tmp_path, tiny_weights):
    model = interir.load_pretrained(tiny_weights)
    with pytest.raises(InterIRError, match="does not exist"):
        evaluate(model, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InterIRError, match="no (evaluation data|image pairs)"):
        evaluate(model, tmp_path / "empty")
    with pytest.raises(InterIRError, match="max_images"):
        evaluate(model, tmp_path / "empty", max_images=0)


# ---------------------------------------------------------------- CLI
def test_cli_eval_writes_outputs(tiny_weights, data_dir, tmp_path, capsys, result):
    j, m = tmp_path / "r.json", tmp_path / "r.md"
    rc = main(["eval", "--weights", str(tiny_weights), "--data", str(data_dir),
               "--json", str(j), "--markdown", str(m)])
    out = capsys.readouterr().out
    assert rc == 0
    assert m.read_text() == out
    assert "| Method | H + R | N | Average |" in out
    parsed = json.loads(j.read_text())
    assert parsed["combos"]["noise"]["psnr"] == pytest.approx(result["combos"]["noise"]["psnr"])
    assert parsed["input"]["average"]["ssim"] == pytest.approx(result["input"]["average"]["ssim"])
    assert parsed["classical"]["combos"]["haze_rain"]["n"] == 2
    assert not list(tmp_path.glob(".*.tmp"))


def _err(capsys, argv: list[str]) -> str:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


def test_cli_eval_errors(tiny_weights, data_dir, tmp_path, capsys):
    w, d = str(tiny_weights), str(data_dir)
    assert "weights folder does not exist" in _err(
        capsys, ["eval", "--weights", str(tmp_path / "none"), "--data", d])
    assert "data folder does not exist" in _err(
        capsys, ["eval", "--weights", w, "--data", str(tmp_path / "none")])
    (tmp_path / "empty").mkdir()
    assert "empty" in _err(
        capsys, ["eval", "--weights", w, "--data", str(tmp_path / "empty")])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_weights / "config.json").read_text())
    assert "model.safetensors" in _err(capsys, ["eval", "--weights", str(broken), "--data", d])
    assert "does not exist" in _err(
        capsys, ["eval", "--weights", w, "--data", d, "--json", str(tmp_path / "x" / "r.json")])
    _err(capsys, ["eval", "--weights", w, "--data", d, "--crop-border", "-1"])
    _err(capsys, ["eval", "--weights", w, "--data", d, "--max-images", "0"])


def test_cli_eval_default_weights(tiny_weights, data_dir, capsys, monkeypatch):
    import interir.weights as weights_mod

    monkeypatch.setattr(weights_mod, "default_checkpoint", lambda: None)
    assert "shipped checkpoint" in _err(capsys, ["eval", "--data", str(data_dir)])
    monkeypatch.setattr(weights_mod, "default_checkpoint", lambda: tiny_weights)
    assert main(["eval", "--data", str(data_dir), "--no-classical", "--max-images", "1"]) == 0
    out = capsys.readouterr().out
    assert "| InterIR (tiny) |" in out and "Classical" not in out


# ---------------------------------------------------------------- brightness bias
def test_brightness_bias_known_values():
    from interir.eval import brightness_bias

    tgt = np.full((8, 8, 3), 100 / 255, dtype=np.float32)
    assert brightness_bias(tgt + 10 / 255, tgt) == pytest.approx(10.0)
    assert brightness_bias(tgt - 4 / 255, tgt) == pytest.approx(-4.0)
    half = tgt.copy()
    half[:4] += 20 / 255  # half the image brighter by 20: +10 on average
    assert brightness_bias(half, tgt) == pytest.approx(10.0)
    assert brightness_bias(tgt, tgt) == 0.0


def test_evaluate_brightness_block_matches_direct_computation(result, data_dir, tiny_weights):
    from interir.eval import brightness_bias, brightness_markdown

    model = interir.load_pretrained(tiny_weights)
    bright = result["brightness"]
    assert set(bright) == {"model", "input", "classical"}
    for combo in ("haze_rain", "noise"):
        b_in, b_model = [], []
        for i in range(2):
            inp = load_image(data_dir / combo / "input" / f"img{i}.png")
            tgt = load_image(data_dir / combo / "target" / f"img{i}.png")
            b_in.append(brightness_bias(inp, tgt))
            with torch.inference_mode():
                y = model(torch.from_numpy(inp).permute(2, 0, 1)[None]).clamp(0, 1)
            b_model.append(brightness_bias(y[0].permute(1, 2, 0).numpy(), tgt))
        for key, vals in (("input", b_in), ("model", b_model)):
            entry = bright[key]["combos"][combo]
            assert entry["bias"] == pytest.approx(np.mean(vals), abs=1e-9)
            assert entry["abs_bias"] == pytest.approx(np.mean(np.abs(vals)), abs=1e-9)
            assert entry["n"] == 2
    # the synthetic haze brightens the input; noise barely moves the mean
    assert bright["input"]["combos"]["haze_rain"]["bias"] > 10
    assert abs(bright["input"]["combos"]["noise"]["bias"]) < 2
    avg = bright["input"]["average"]
    assert avg["bias"] == pytest.approx(np.mean([e["bias"] for e in
                                                 bright["input"]["combos"].values()]))
    md = brightness_markdown(result)
    assert "| InterIR (tiny) |" in md and "| Degraded input |" in md
    assert f"{bright['input']['combos']['noise']['bias']:+.2f}/" in md


# ---------------------------------------------------------------- per-iteration behaviour
def test_monotonicity_helpers():
    from interir.eval import MONOTONE_TOL_DB, decreasing, non_decreasing

    assert MONOTONE_TOL_DB == 0.05
    assert non_decreasing([10.0, 9.96, 10.5])  # a 0.04 dB dip is within tolerance
    assert not non_decreasing([10.0, 9.94, 10.5])
    assert non_decreasing([3.0])
    assert decreasing([0.5, 0.4, 0.1]) and not decreasing([0.5, 0.5, 0.1])
    assert not decreasing([0.5, 0.6])


def test_relative_residual_constructed():
    from interir.eval import relative_residual
    from interir.trace import IterationRecord

    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 2, 3, 4, generator=g)
    eye_h, eye_w = torch.eye(3).expand(1, 2, 3, 3), torch.eye(4).expand(1, 2, 4, 4)
    rec = IterationRecord(I=1.1 * z, A=eye_h, B=eye_w, Lambda=torch.zeros_like(z),
                          step_norm=0.0, decode=lambda I: I, z=z)
    assert relative_residual(rec) == pytest.approx(0.1, rel=1e-6)
    rec2 = IterationRecord(I=z, A=2 * eye_h, B=0.5 * eye_w, Lambda=torch.zeros_like(z),
                           step_norm=0.0, decode=lambda I: I, z=z)
    assert relative_residual(rec2) == pytest.approx(0.0, abs=1e-7)  # A I B = z exactly
    # consistent with the trace's own fidelity = ||A I B - z||^2 / numel
    assert relative_residual(rec) == pytest.approx(
        math.sqrt(rec.fidelity * z.numel()) / float(z.norm()), rel=1e-5)


def test_iteration_curves_on_a_real_trace(tiny_weights, data_dir):
    from interir.eval import iteration_curves, relative_residual

    model = interir.load_pretrained(tiny_weights).eval()
    inp = load_image(data_dir / "noise" / "input" / "img0.png")
    tgt = load_image(data_dir / "noise" / "target" / "img0.png")
    tr = interir.trace(model, torch.from_numpy(inp).permute(2, 0, 1)[None])
    ps, rs = iteration_curves(tr, tgt)
    assert len(ps) == len(rs) == len(tr.iterations) == model.config["n_blocks"] + 1
    assert ps[-1] == pytest.approx(psnr(tr.output.clamp(0, 1), tgt), abs=1e-9)  # last = output
    assert ps[0] == pytest.approx(psnr(tr.iterations[0].image.clamp(0, 1), tgt), abs=1e-9)
    assert rs == [relative_residual(it) for it in tr.iterations]
    assert all(r > 0 and math.isfinite(r) for r in rs)


class _FakeIt:
    def __init__(self, image: torch.Tensor, residual: float) -> None:
        z = torch.ones(1, 1, 2, 2)
        self.image, self.z = image, z
        self.A, self.B = torch.eye(2).view(1, 1, 2, 2), torch.eye(2).view(1, 1, 2, 2)
        self.I = z * (1 + residual)  # ||A I B - z|| / ||z|| = residual


def test_evaluate_iterations_with_known_curves(tiny_weights, data_dir, monkeypatch):
    """A stand-in trace whose curves are known: image i improves over k (or not), and its
    residual falls (or not); evaluate() must count exactly those."""
    import importlib
    from types import SimpleNamespace

    trace_mod = importlib.import_module("interir.trace")
    calls = {"n": 0}

    def fake_trace(model, x):
        i = calls["n"]
        calls["n"] += 1
        tgt_path = sorted((data_dir / ("haze_rain" if i < 2 else "noise") / "target").iterdir())
        tgt = torch.from_numpy(load_image(tgt_path[i % 2])).permute(2, 0, 1)[None]
        noise = torch.randn(tgt.shape, generator=torch.Generator().manual_seed(i))
        scales = [0.2, 0.1, 0.05] if i != 1 else [0.05, 0.1, 0.2]  # pair 1 gets worse
        res = [0.5, 0.3, 0.1] if i != 3 else [0.5, 0.6, 0.1]  # pair 3's residual rises once
        its = [_FakeIt((tgt + s * noise).clamp(0, 1), r) for s, r in zip(scales, res)]
        return SimpleNamespace(iterations=its, output=its[-1].image)

    monkeypatch.setattr(trace_mod, "trace", fake_trace)
    res = evaluate(interir.load_pretrained(tiny_weights), data_dir, include_classical=False,
                   iterations=True)
    it = res["iterations"]
    assert calls["n"] == 4
    assert it["combos"]["haze_rain"]["psnr_non_decreasing"] == 0.5
    assert it["combos"]["noise"]["psnr_non_decreasing"] == 1.0
    assert it["combos"]["haze_rain"]["residual_decreasing"] == 1.0
    assert it["combos"]["noise"]["residual_decreasing"] == 0.5
    pooled = it["all_pairs"]
    assert (pooled["n"], pooled["psnr_non_decreasing"], pooled["residual_decreasing"]) == \
        (4, 0.75, 0.75)
    assert it["combos"]["noise"]["residual"] == pytest.approx([0.5, 0.45, 0.1], rel=1e-6)
    # the model row is the trace's output: its PSNR is the last early-exit PSNR
    for combo in ("haze_rain", "noise"):
        assert res["combos"][combo]["psnr"] == pytest.approx(it["combos"][combo]["psnr"][-1])
    assert it["tolerance_db"] == 0.05


def test_evaluate_iterations_real_model(tiny_weights, data_dir, result, capsys, tmp_path):
    from interir.eval import iterations_markdown

    res = evaluate(interir.load_pretrained(tiny_weights), data_dir, include_classical=False,
                   iterations=True)
    assert res["combos"] == result["combos"]  # tracing changes nothing in the model row
    it = res["iterations"]
    assert set(it) == {"combos", "all_pairs", "tolerance_db"} and it["all_pairs"]["n"] == 4
    for block in it["combos"].values():
        assert len(block["psnr"]) == len(block["residual"]) == 2  # n_blocks = 1: k = 0, 1
        assert 0.0 <= block["psnr_non_decreasing"] <= 1.0
    json.loads(to_json(res))
    md = iterations_markdown(res)
    assert "| all pairs (4) |" in md and "→" in md
    assert all(line.count("|") == 6 for line in md.splitlines() if line.startswith("|"))
    # CLI: --iterations adds the table; the brightness table is always printed
    j = tmp_path / "it.json"
    assert main(["eval", "--weights", str(tiny_weights), "--data", str(data_dir),
                 "--no-classical", "--iterations", "--json", str(j)]) == 0
    out = capsys.readouterr().out
    assert "Brightness bias" in out and "early-exit PSNR over k" in out
    assert json.loads(j.read_text())["iterations"]["all_pairs"]["n"] == 4


def test_iterations_need_an_interir_model(data_dir):
    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(InterIRError, match="InterIR"):
        evaluate(Identity(), data_dir, include_classical=False, iterations=True)
    res = evaluate(Identity(), data_dir, include_classical=False)  # without: fine
    assert res["brightness"]["model"] == res["brightness"]["input"]  # output = input


# ---------------------------------------------------------------- AWGN set
def _photo_dir(root: Path, n: int = 3, size: int = 40) -> Path:
    d = root / "clean"
    d.mkdir()
    for i in range(n):
        img = 0.2 + 0.6 * _smooth_image(size + 8 * i, 20 + i)  # away from 0/1: little clipping
        save_image(img, d / f"p{i}.png")
    return d


def test_awgn_pairs(tmp_path):
    from interir.eval import awgn_pairs

    d = _photo_dir(tmp_path)
    get, n = awgn_pairs(d, sigma=25, size=32, seed=3)
    assert n == 3
    noisy, clean, name = get(1)
    assert name == "p1.png" and noisy.shape == clean.shape == (3, 32, 32)
    assert torch.equal((noisy * 255).round() / 255, noisy)  # 8-bit values
    assert float(noisy.min()) >= 0 and float(noisy.max()) <= 1
    assert float((noisy - clean).std()) * 255 == pytest.approx(25, rel=0.08)
    # the crop is the centre crop of the photo
    full = load_image(d / "p1.png")
    assert torch.allclose(clean, torch.from_numpy(full[8:40, 8:40]).permute(2, 0, 1), atol=1e-6)
    again, _, _ = awgn_pairs(d, sigma=25, size=32, seed=3)[0](1)
    other, _, _ = awgn_pairs(d, sigma=25, size=32, seed=4)[0](1)
    assert torch.equal(noisy, again) and not torch.equal(noisy, other)
    assert not torch.equal(get(0)[0] - get(0)[1], get(2)[0][:, :32, :32] - get(2)[1])
    with pytest.raises(InterIRError, match="sigma"):
        awgn_pairs(d, sigma=0)
    (tmp_path / "none").mkdir()
    with pytest.raises(InterIRError, match="no images"):
        awgn_pairs(tmp_path / "none")


def test_evaluate_awgn(tmp_path, tiny_weights):
    from interir.eval import evaluate_awgn

    d = _photo_dir(tmp_path)
    res = evaluate_awgn(interir.load_pretrained(tiny_weights), d, sigma=25, size=32, seed=0)
    assert list(res["combos"]) == ["awgn25"] and res["combos"]["awgn25"]["n"] == 3
    # input PSNR of sigma = 25 noise: 20 log10(255 / 25) = 20.17 dB (less a little clipping)
    assert res["input"]["combos"]["awgn25"]["psnr"] == pytest.approx(20.17, abs=0.5)
    assert abs(res["brightness"]["input"]["combos"]["awgn25"]["bias"]) < 1.0
    assert "| awgn25 | Average |" in to_markdown(res) and "classical" not in res
    assert res["meta"]["n_images"] == 3 and "AWGN sigma 25" in res["meta"]["data"]


# ---------------------------------------------------------------- interventions
def _script(name: str):
    """A module of scripts/ (they are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1]
                                                  / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _perturbed(conv_type: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random model whose zero-initialised residual scales are not zero, so that every
    intervention has something to change."""
    torch.manual_seed(seed)
    model = interir.build_model("tiny", n_blocks=1, channels=8, conv_type=conv_type)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def all_combos_dir(tmp_path_factory) -> Path:
    from interir.data.degrade import COMBOS

    root = tmp_path_factory.mktemp("ivset")
    _write_set(root, list(reversed(COMBOS)), n=1, size=32, seed=3)
    return root


@pytest.fixture(scope="module")
def iv_results(all_combos_dir) -> dict:
    from interir.eval import evaluate_interventions

    return {kind: evaluate_interventions(_perturbed(kind), all_combos_dir)
            for kind in ("explain", "standard")}


def test_interventions_every_combination(iv_results):
    from interir.data.degrade import COMBOS
    from interir.eval import interventions_markdown

    res = iv_results["explain"]
    assert list(res["combos"]) == list(COMBOS)  # all seven, in COMBOS order
    assert res["applicable"] == {"uniform_attention": True, "zero_multiplier": True}
    assert res["meta"]["n_images"] == len(COMBOS)
    for entry in res["combos"].values():
        assert entry["n"] == 1
        for name in ("uniform_attention", "zero_multiplier"):
            b = entry[name]
            assert b["delta_psnr"] == pytest.approx(b["psnr"] - entry["none"]["psnr"])
            assert 0.0 <= b["mean_abs_change"] <= b["max_abs_change"] <= 255.0
    for name in ("uniform_attention", "zero_multiplier"):  # average: the mean over combos
        vals = [e[name]["delta_psnr"] for e in res["combos"].values()]
        assert res["average"][name]["delta_psnr"] == pytest.approx(np.mean(vals))
    md = interventions_markdown(res)
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == [combo_label(c) for c in COMBOS] + ["Average"]
    assert all(r.count("|") == 9 for r in rows) and "n/a" not in md


def test_interventions_match_direct_computation(iv_results, all_combos_dir):
    from interir.interventions import uniform_attention, zero_multiplier

    model = _perturbed("explain")
    inp = load_image(all_combos_dir / "haze" / "input" / "img0.png")
    tgt = load_image(all_combos_dir / "haze" / "target" / "img0.png")
    x = torch.from_numpy(inp).permute(2, 0, 1)[None]
    with torch.inference_mode():
        base = model(x).clamp(0, 1)
        with zero_multiplier(model):
            zero = model(x).clamp(0, 1)
        with uniform_attention(model):
            flat = model(x).clamp(0, 1)
    e = iv_results["explain"]["combos"]["haze"]
    assert e["none"]["psnr"] == pytest.approx(psnr(base, tgt), abs=1e-9)
    assert e["zero_multiplier"]["psnr"] == pytest.approx(psnr(zero, tgt), abs=1e-9)
    assert e["zero_multiplier"]["mean_abs_change"] == pytest.approx(
        float((zero - base).abs().mean()) * 255, rel=1e-5)
    assert e["uniform_attention"]["max_abs_change"] == pytest.approx(
        float((flat - base).abs().max()) * 255, rel=1e-5)


def test_zero_multiplier_changes_an_explainable_model(iv_results):
    avg = iv_results["explain"]["average"]["zero_multiplier"]
    assert avg["mean_abs_change"] > 0.01 and avg["max_abs_change"] > 0.1
    assert any(e["zero_multiplier"]["delta_psnr"] != 0.0
               for e in iv_results["explain"]["combos"].values())


def test_uniform_attention_is_not_applicable_to_standard_convs(iv_results, all_combos_dir):
    from interir.eval import interventions_markdown
    from interir.interventions import applies, uniform_attention

    res = iv_results["standard"]
    assert res["applicable"] == {"uniform_attention": False, "zero_multiplier": True}
    assert res["average"]["uniform_attention"] is None
    assert all(e["uniform_attention"] is None for e in res["combos"].values())
    assert res["average"]["zero_multiplier"]["mean_abs_change"] > 0.01  # Λ = 0 still acts
    md = interventions_markdown(res)
    assert md.count("| n/a | n/a | n/a |") == 8  # 7 combos + average
    assert "nothing to act on" in md
    # and it really does nothing there: the hook has no attention map to replace
    model = _perturbed("standard")
    assert not applies(model, "uniform_attention") and applies(model, "zero_multiplier")
    x = torch.from_numpy(load_image(all_combos_dir / "rain" / "input" / "img0.png")).permute(2, 0, 1)
    with torch.inference_mode():
        base = model(x[None])
        with uniform_attention(model):
            assert torch.equal(model(x[None]), base)
    with pytest.raises(ValueError, match="unknown intervention"):
        applies(model, "nope")


def test_interventions_json_round_trip(iv_results):
    from interir.eval import interventions_markdown

    for res in iv_results.values():
        back = json.loads(to_json({"interventions": res}))["interventions"]
        assert back == res
        assert interventions_markdown(back) == interventions_markdown(res)


def test_interventions_errors(all_combos_dir, tmp_path):
    from interir.eval import evaluate_interventions

    with pytest.raises(InterIRError, match="InterIR"):
        evaluate_interventions(torch.nn.Identity(), all_combos_dir)
    with pytest.raises(InterIRError, match="max_images"):
        evaluate_interventions(_perturbed("explain"), all_combos_dir, max_images=0)
    with pytest.raises(InterIRError, match="does not exist"):
        evaluate_interventions(_perturbed("explain"), tmp_path / "missing")


def test_model_card_interventions_section(iv_results):
    cards = _script("write_model_cards")
    ex = cards.interventions_section({"interventions": iv_results["explain"]})
    assert ex.startswith("### Interventions") and "| Average |" in ex
    assert "**Uniform attention**: ΔPSNR" in ex and "**Λ = 0**: ΔPSNR" in ex
    std = cards.interventions_section({"interventions": iv_results["standard"]})
    assert "**Uniform attention**: not applicable" in std and "| n/a |" in std
    assert "Not measured yet" in cards.interventions_section({})
    # an effect below 1/255 and 0.1 dB everywhere is called what it is
    tiny = json.loads(json.dumps(iv_results["explain"]))
    for e in list(tiny["combos"].values()) + [tiny["average"]]:
        e["uniform_attention"].update(mean_abs_change=0.3, delta_psnr=0.02)
    line = cards._effect_line("uniform_attention", tiny)
    assert "Mean change below 1/255 on every combination" in line
    assert "|ΔPSNR| below 0.1 dB on every combination" in line and "does nothing" in line
    first = next(iter(tiny["combos"].values()))
    first["uniform_attention"].update(mean_abs_change=5.0, delta_psnr=-1.0)
    line = cards._effect_line("uniform_attention", tiny)
    assert "does nothing" not in line and "every combination" not in line.split(";")[0]
    assert "Mean change below 1/255 on H + R, " in line  # the other six combos are listed
    for e in tiny["combos"].values():
        e["uniform_attention"].update(mean_abs_change=5.0, delta_psnr=-1.0)
    line = cards._effect_line("uniform_attention", tiny)
    assert "at least 1/255 on every combination" in line and "at least 0.1 dB on every" in line


def test_evaluate_checkpoints_update_adds_interventions(tmp_path, all_combos_dir, capsys):
    script = _script("evaluate_checkpoints")
    ck = tmp_path / "ck"
    interir.save_pretrained(_perturbed("explain"), ck)
    res = evaluate(interir.load_pretrained(ck), all_combos_dir, include_classical=False,
                   weights=str(ck))
    (ck / "eval.json").write_text(to_json(res))
    old_md = script.render(str(ck), json.loads(to_json(res)))
    args = script.argparse.Namespace(checkpoints=[str(ck)], iterations=False, awgn_clean=None,
                                     interventions=True, against=[])
    script.update(args, all_combos_dir)
    new = json.loads((ck / "eval.json").read_text())
    assert {k: v for k, v in new.items() if k != "interventions"} == json.loads(to_json(res))
    assert new["interventions"]["combos"]["haze"]["none"]["psnr"] == pytest.approx(
        res["combos"]["haze"]["psnr"], abs=1e-9)
    md = (ck / "eval.md").read_text()
    assert md.startswith(old_md.rstrip("\n")) and "| Combination | no intervention |" in md
    # the card's evaluation table leaves the interventions to their own section
    cards = _script("write_model_cards")
    table = cards.table(new | {"_dir": str(ck)})
    assert "no intervention" not in table and "Degraded input" in table
    # a model row that the forward does not reproduce is refused; so is --update with nothing
    new["combos"]["haze"]["psnr"] += 1.0
    (ck / "eval.json").write_text(to_json(new))
    with pytest.raises(SystemExit, match="differs"):
        script.update(args, all_combos_dir)
    with pytest.raises(SystemExit, match="needs a block"):
        script.update(script.argparse.Namespace(checkpoints=[str(ck)], iterations=False,
                                                awgn_clean=None, interventions=False, against=[]),
                      all_combos_dir)


def test_evaluate_checkpoints_update_adds_the_delta_against_an_evaluated_twin(tmp_path, all_combos_dir):
    """``--update --against TWIN``: the ΔPSNR from two eval.json measured separately (e.g. in
    parallel), written into both, every other number kept."""
    script = _script("evaluate_checkpoints")
    a, b = tmp_path / "a", tmp_path / "b"
    interir.save_pretrained(_perturbed("explain"), a)
    res = json.loads(to_json(evaluate(interir.load_pretrained(a), all_combos_dir,
                                      include_classical=False, weights=str(a))))
    twin = json.loads(json.dumps(res))
    for entry in [*twin["combos"].values(), twin["average"]]:
        entry["psnr"] -= 0.5
    b.mkdir()
    (a / "eval.json").write_text(to_json(res))
    (b / "eval.json").write_text(to_json(twin))
    args = script.argparse.Namespace(checkpoints=[str(a)], iterations=False, awgn_clean=None,
                                     interventions=False, against=[str(b)])
    script.update(args, all_combos_dir)
    new_a, new_b = (json.loads((d / "eval.json").read_text()) for d in (a, b))
    assert set(new_a["delta_psnr_vs"]["b"]) == {*res["combos"], "average"}
    assert all(v == pytest.approx(0.5) for v in new_a["delta_psnr_vs"]["b"].values())
    assert all(v == pytest.approx(-0.5) for v in new_b["delta_psnr_vs"]["a"].values())
    assert {k: v for k, v in new_a.items() if k != "delta_psnr_vs"} == res
    assert {k: v for k, v in new_b.items() if k != "delta_psnr_vs"} == twin
    # a twin measured on other pairs is refused, and nothing is written
    twin["meta"]["n_images"] = 3
    (b / "eval.json").write_text(to_json(twin))
    (a / "eval.json").write_text(to_json(res))
    with pytest.raises(SystemExit, match="other data or settings"):
        script.update(args, all_combos_dir)
    assert "delta_psnr_vs" not in json.loads((a / "eval.json").read_text())


def test_cli_eval_interventions(tmp_path, all_combos_dir, capsys):
    ck = tmp_path / "std"
    interir.save_pretrained(_perturbed("standard"), ck)
    j = tmp_path / "iv.json"
    assert main(["eval", "--weights", str(ck), "--data", str(all_combos_dir), "--no-classical",
                 "--max-images", "1", "--interventions", "--json", str(j)]) == 0
    out = capsys.readouterr().out
    assert "| Combination | no intervention | Uniform attention |" in out and "| n/a |" in out
    iv = json.loads(j.read_text())["interventions"]
    assert iv["applicable"]["uniform_attention"] is False and len(iv["combos"]) == 7


def test_evaluate_checkpoints_against_reads_an_earlier_eval_of_the_same_pairs(tmp_path):
    script = _script("evaluate_checkpoints")
    meta = {"data": "data_local/testset", "n_images": 280, "y_channel": False, "crop_border": 0,
            "max_images_per_combo": None}
    fresh = {"new": {"meta": dict(meta, weights="new")}}
    old = tmp_path / "old"
    old.mkdir()
    (old / "eval.json").write_text(json.dumps({"meta": dict(meta, weights="old"), "average": {"psnr": 1}}))
    assert script.earlier_results([str(old)], fresh)[str(old)]["average"] == {"psnr": 1}
    (old / "eval.json").write_text(json.dumps({"meta": dict(meta, n_images=35)}))
    with pytest.raises(SystemExit, match="other data or settings"):
        script.earlier_results([str(old)], fresh)
    with pytest.raises(SystemExit, match="no eval.json"):
        script.earlier_results([str(tmp_path / "none")], fresh)


def test_brightness_check_affine_fit_recovers_a_known_contrast():
    script = _script("brightness_check")
    rng = np.random.default_rng(0)
    tgt = rng.random((16, 16, 3))
    pred = 0.8 * tgt + np.array([0.1, 0.0, -0.05])
    a, b = script.affine_fit(pred, tgt)
    assert a == pytest.approx([0.8] * 3) and b == pytest.approx([0.1, 0.0, -0.05])
    flat = np.full((4, 4, 3), 0.5)
    a, b = script.affine_fit(flat + 0.1, flat)  # a flat target: a = 1, the offset is the bias
    assert a == pytest.approx([1.0] * 3) and b == pytest.approx([0.1] * 3)


def test_brightness_check_matches_eval_and_its_oracle_fixes_the_means(tmp_path, tiny_weights,
                                                                      data_dir, result, capsys):
    script = _script("brightness_check")
    res = script.check(str(tiny_weights), str(data_dir))
    assert list(res) == ["haze_rain", "noise", "average"]
    for combo in ("haze_rain", "noise"):  # same numbers as interir eval's blocks
        assert res[combo]["psnr"] == pytest.approx(result["combos"][combo]["psnr"], abs=1e-3)
        assert res[combo]["bias"] == pytest.approx(
            result["brightness"]["model"]["combos"][combo]["bias"], abs=1e-3)
        # the untrained model's output is off in brightness: setting the means helps
        assert res[combo]["oracle_psnr"] > res[combo]["psnr"]
        # a global affine fix per channel is at least as good as setting the means, up to clipping
        assert res[combo]["affine_psnr"] > res[combo]["psnr"]
    assert script.main(["--data", str(tmp_path / "none"), str(tiny_weights)]) == 2
    assert "error:" in capsys.readouterr().err


def test_veil_regression_measures_the_added_brightness_and_fits_it():
    script = _script("veil_regression")
    clean = torch.rand(2, 3, 40, 56)
    hazy = torch.lerp(torch.full_like(clean, 0.9), clean, 0.6)  # a uniform veil towards 0.9
    v = script.veil(hazy, clean)
    assert v.shape == (2, 3)
    assert torch.allclose(v, 0.4 * (0.9 - clean.mean((2, 3))), atol=1e-6)
    stats = script.global_stats(hazy)
    assert stats.shape == (2, 16)
    assert torch.allclose(stats[:, :3], hazy.mean((2, 3)))
    torch.manual_seed(0)
    net = script.VeilRegressor(width=8)
    assert net(torch.rand(1, 3, 33, 47)).shape == (1, 3)  # any size: global pooling
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    before = (net(hazy) - v).abs().mean().item()
    for _ in range(60):
        loss = (net(hazy) - v).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (net(hazy) - v).abs().mean().item() < 0.3 * before


def test_veil_regression_refuses_bad_paths_before_training(tmp_path, capsys):
    script = _script("veil_regression")
    assert script.main(["--val", str(tmp_path / "none"), "--steps", "1"]) == 2
    assert "error:" in capsys.readouterr().err
    assert script.main(["--train", str(tmp_path / "none"), "--steps", "1"]) == 2
    assert "--train" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert script.main(["--val", str(tmp_path / "empty"), "--steps", "1", str(tmp_path / "noweights")]) == 2
    assert "error:" in capsys.readouterr().err


# ---------------------------------------------------------------- paired comparison
def test_paired_bootstrap_known_values():
    paired = _script("compare_checkpoints").paired
    groups = np.repeat(np.arange(10), 3)
    mean, lo, hi, p_pos = paired(np.full(30, 0.25), groups)
    assert (mean, lo, hi, p_pos) == pytest.approx((0.25, 0.25, 0.25, 1.0))
    diff = np.where(groups < 5, 1.0, -1.0)  # half the photos gain 1, half lose 1
    mean, lo, hi, p_pos = paired(diff, groups)
    assert mean == pytest.approx(0.0) and lo < -0.3 and hi > 0.3 and 0.2 < p_pos < 0.8


def test_compare_checkpoints_matches_evaluate(tiny_weights, data_dir, result, tmp_path,
                                             monkeypatch, capsys):
    """The per-image numbers average to what evaluate() reports, and a checkpoint against itself
    differs by exactly 0."""
    import csv
    import shutil

    mod = _script("compare_checkpoints")
    data = tmp_path / "set"
    shutil.copytree(data_dir, data)
    with open(data / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["combo", "file", "source"])
        for combo in ("haze_rain", "noise"):
            for i in range(2):
                w.writerow([combo, f"img{i}.png", f"photo{i}"])
    per = mod.per_image(str(tiny_weights), data)
    assert len(per) == 4
    assert np.mean([v[0] for v in per.values()]) == pytest.approx(result["average"]["psnr"])
    assert np.mean([v[1] for v in per.values()]) == pytest.approx(
        result["brightness"]["model"]["average"]["abs_bias"])
    monkeypatch.setattr("sys.argv", ["compare_checkpoints.py", "--data", str(data),
                                     "--reference", str(tiny_weights), str(tiny_weights)])
    mod.main()
    out = capsys.readouterr().out
    assert "4 pairs over 2 photos" in out
    assert "| +0.000 [+0.000, +0.000] | 0.00 |" in out
    monkeypatch.setattr("sys.argv", ["compare_checkpoints.py", "--data", str(data_dir),
                                     "--reference", str(tiny_weights), str(tiny_weights)])
    with pytest.raises(SystemExit, match="no manifest.csv"):
        mod.main()
