"""Degradation synthesis (interir.data.degrade) and the `degrade` / `make-testset` commands."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from interir.cli import main as cli_main
from interir.data.degrade import (COMBOS, RANGES, combo_levels, degrade, degrade_image,
                                  sample_levels)
from interir.errors import InterIRError

torch.set_num_threads(1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _img(b=2, h=48, w=64, seed=0, lo=0.0, hi=1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, 3, h, w, generator=_gen(1000 + seed))


LEVELS = {"haze": dict(haze=100.0), "rain": dict(rain=250.0), "noise": dict(noise=30.0),
          "all": dict(haze=80.0, rain=150.0, noise=20.0)}


# --------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("kind", list(LEVELS))
def test_same_seed_same_output_different_seed_different(kind):
    x = _img()
    a = degrade(x, generator=_gen(7), **LEVELS[kind])
    b = degrade(x, generator=_gen(7), **LEVELS[kind])
    c = degrade(x, generator=_gen(8), **LEVELS[kind])
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a - c).abs().max() > 1e-3


def test_degrade_image_is_seeded():
    img = _img(1)[0].permute(1, 2, 0).numpy()
    a = degrade_image(img, 50, 100, 10, seed=3)
    assert np.array_equal(a, degrade_image(img, 50, 100, 10, seed=3))
    assert not np.array_equal(a, degrade_image(img, 50, 100, 10, seed=4))
    assert a.shape == img.shape and a.dtype == np.float32


# --------------------------------------------------------------------------- level 0
def test_all_zero_levels_are_bit_exact_identity():
    x = _img(3)
    for y in (degrade(x), degrade(x, 0, 0, 0, generator=_gen(0)),
              degrade(x, torch.zeros(3), torch.zeros(3), torch.zeros(3), generator=_gen(0))):
        assert torch.equal(y, x)
        assert y.data_ptr() != x.data_ptr()  # a copy, not the caller's tensor


@pytest.mark.parametrize("component", ["haze", "rain", "noise"])
def test_zero_level_sample_untouched_by_that_component(component):
    x = _img(3)
    lv = torch.tensor([0.0, RANGES[component][1] / 2, RANGES[component][1]])
    y = degrade(x, generator=_gen(1), **{component: lv})
    assert torch.equal(y[0], x[0])
    assert not torch.equal(y[1], x[1]) and not torch.equal(y[2], x[2])


def test_each_component_leaves_zero_level_samples_exact():
    # degrade() restores all-zero samples at the end, so check each component on its own
    from interir.data.degrade import _haze, _rain, _streaks

    x = _img(2)
    cpu = torch.device("cpu")
    hazy = _haze(x, torch.tensor([0.0, 100.0]), _gen(0), cpu)
    assert torch.equal(hazy[0], x[0]) and not torch.equal(hazy[1], x[1])
    rainy = _rain(x, torch.tensor([0.0, 300.0]), _gen(0), cpu)
    assert torch.equal(rainy[0], x[0]) and not torch.equal(rainy[1], x[1])
    depth = _streaks(2, 48, 64, torch.tensor([0.0, 300.0]), torch.zeros(2, 3), _gen(0), cpu,
                     cpu, torch.float32)
    assert torch.equal(depth[0], torch.zeros_like(depth[0])) and float(depth[1].max()) > 0.3


def test_mixed_batch_zero_sample_exact():
    x = _img(2)
    y = degrade(x, torch.tensor([0.0, 90.0]), torch.tensor([0.0, 200.0]),
                torch.tensor([0.0, 25.0]), generator=_gen(2))
    assert torch.equal(y[0], x[0])
    assert not torch.equal(y[1], x[1])


# --------------------------------------------------------------------------- range / dtype
@pytest.mark.parametrize("combo", COMBOS)
def test_output_range_shape_dtype(combo):
    x = _img(2, 40, 56)
    h, r, n, _ = sample_levels(2, [combo], generator=_gen(3))
    y = degrade(x, RANGES["haze"][1] * (h > 0), RANGES["rain"][1] * (r > 0),
                RANGES["noise"][1] * (n > 0), generator=_gen(4))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.isfinite(y).all()


def test_float64_and_float16_inputs_keep_dtype():
    x = _img(1, 32, 32)
    y64 = degrade(x.double(), 50, 100, 10, generator=_gen(0))
    y16 = degrade(x.half(), 50, 100, 10, generator=_gen(0))
    assert y64.dtype == torch.float64 and y16.dtype == torch.float16
    assert torch.equal(degrade(x.double(), generator=_gen(0)), x.double())


@pytest.mark.parametrize("shape", [(1, 8, 8), (2, 8, 300), (3, 37, 61), (1, 300, 9), (2, 1, 1),
                                   (1, 129, 257)])
def test_shapes_small_and_non_square(shape):
    b, h, w = shape
    x = _img(b, h, w)
    y = degrade(x, 120.0, 280.0, 40.0, generator=_gen(5))
    assert y.shape == x.shape
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    if h * w >= 64:
        assert not torch.equal(y, x)


def test_empty_batch():
    x = torch.rand(0, 3, 16, 16)
    assert degrade(x, 10, 10, 10, generator=_gen(0)).shape == x.shape


# --------------------------------------------------------------------------- monotonic effect
@pytest.mark.parametrize("component", ["haze", "rain", "noise"])
def test_effect_grows_with_level(component):
    # mid-grey image (little clipping) so every component moves it visibly
    x = _img(4, 64, 64, lo=0.1, hi=0.5)
    hi = RANGES[component][1]
    devs = []
    for frac in (0.0, 0.1, 0.3, 0.6, 1.0):
        y = degrade(x, generator=_gen(11), **{component: hi * frac})
        devs.append(float((y - x).abs().mean()))
    assert devs[0] == 0.0
    assert all(b > a * 1.2 for a, b in zip(devs, devs[1:])), devs


def test_haze_brightens_far_top_more_than_near_bottom():
    x = torch.full((8, 3, 64, 64), 0.2)
    y = degrade(x, haze=100.0, generator=_gen(0))
    top, bottom = y[:, :, :16].mean(), y[:, :, -16:].mean()
    assert top > bottom > 0.25  # airlight is near white; the top is farther on average
    assert float(y.max()) < 0.99  # heavy, but not a white-out


def test_haze_top_level_is_not_white_out():
    x = torch.full((4, 3, 64, 64), 0.1)
    y = degrade(x, haze=150.0, generator=_gen(0))
    t_min = (1 - (y - 0.1) / 0.9).min()  # airlight <= 1, so this bounds transmission from below
    assert float(t_min) > 0.1


def test_noise_sigma_matches_level():
    x = torch.full((2, 3, 128, 128), 0.5)
    y = degrade(x, noise=25.0, generator=_gen(0))
    assert math.isclose(float((y - x).std()), 25 / 255, rel_tol=0.03)
    assert abs(float((y - x).mean())) < 2e-3


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).mean() / (a.std() * b.std()))


def _shift_corr(t: torch.Tensor, dy: int, dx: int) -> float:
    """Correlation of the (H, W) map ``t`` with itself moved by (dy >= 0, dx) pixels."""
    h, w = t.shape
    a = t[:h - dy, max(0, -dx):w - max(0, dx)]
    b = t[dy:, max(0, dx):w - max(0, -dx) if dx < 0 else w]
    b = b[:, :a.shape[1]]
    return _corr(a, b)


def _streak_depth(theta: float, size: int = 128, rain: float = 300.0, b: int = 4, seed: int = 0
                  ) -> torch.Tensor:
    """Optical depth (B, H, W) of all streak layers, every layer at the angle ``theta``."""
    from interir.data.degrade import RAIN_LAYERS, _streaks

    cpu = torch.device("cpu")
    th = torch.full((b, len(RAIN_LAYERS)), theta)
    return _streaks(b, size, size, torch.full((b,), rain), th, _gen(seed), cpu, cpu,
                    torch.float32)[:, 0]


def test_rain_is_near_grey_streaks_over_a_veil():
    x = torch.zeros(8, 3, 128, 128)
    y = degrade(x, rain=300.0, generator=_gen(0))
    assert (y[:, 0] - y[:, 1]).abs().max() < 0.05  # near-grey (a slight tint per image)
    g = y.mean(1)
    veil = g.flatten(1).quantile(0.05, dim=1)
    assert float(veil.min()) > 0.03  # heavy rain lays a veil over the whole image
    above = g - veil.view(-1, 1, 1)
    lit = float((above > 0.05).float().mean())
    assert 0.05 < lit < 0.6, lit  # streaks cover part of the image, not all of it
    assert float(g.max()) > 0.5 and float(g.max()) < 1.0  # bright, but semi-transparent


@pytest.mark.parametrize("deg", [0.0, 20.0, -25.0])
def test_streaks_follow_the_angle(deg):
    t = _streak_depth(math.radians(deg))
    lag = 8
    dy, dx = round(lag * math.cos(math.radians(deg))), round(lag * math.sin(math.radians(deg)))
    along = np.mean([_shift_corr(m, dy, dx) for m in t])
    across = np.mean([_shift_corr(m, 0, 3) for m in t])
    assert along > 0.5 and across < 0.25, (along, across)
    if deg != 0:  # leaning the stated way, not mirrored
        mirror = np.mean([_shift_corr(m, dy, -dx) for m in t])
        assert along > mirror + 0.25, (along, mirror)


def test_rain_angles_vary_between_images_and_stay_near_vertical():
    from interir.data.degrade import RAIN_ANGLE_JITTER, RAIN_MAX_ANGLE

    x = torch.zeros(24, 3, 96, 96)
    y = degrade(x, rain=200.0, generator=_gen(3)).mean(1)
    # each image's tilt: the direction along which it best matches itself 16 px further down
    shifts = range(-12, 13)
    best = [max(shifts, key=lambda dx: _shift_corr(m, 16, dx)) for m in y]
    tilt = torch.rad2deg(torch.atan2(torch.tensor(best, dtype=torch.float32), torch.tensor(16.0)))
    assert float(tilt.abs().max()) < RAIN_MAX_ANGLE + RAIN_ANGLE_JITTER + 5, tilt
    assert float(tilt.std()) > 8.0, tilt  # several angles, not one
    assert float(tilt.max()) > 10 and float(tilt.min()) < -10, tilt  # leaning both ways


def test_streak_lengths_span_the_layer_range(monkeypatch):
    import importlib

    mod = importlib.import_module("interir.data.degrade")
    layer = mod.RainLayer(density=0.01, length=(6.0, 40.0), opacity=(0.5, 1.0), scale=1.0)
    monkeypatch.setattr(mod, "RAIN_LAYERS", (layer,))
    t = _streak_depth(0.0, size=256, rain=20.0)  # sparse, vertical, 1 px wide: exact runs
    lit = (t > 0).numpy()
    runs = []
    for img in lit:
        for column in img.T:
            edges = np.flatnonzero(np.diff(np.concatenate(([0], column, [0])).astype(int)))
            runs += list(edges[1::2] - edges[::2])
    runs = np.array(runs)
    assert len(runs) > 200
    j = mod.RAIN_IMAGE_JITTER
    assert np.percentile(runs, 99) <= 40 * (1 + j) + 1
    assert np.percentile(runs, 10) <= 6 * (1 + j) + 4  # many short (far) streaks
    assert np.percentile(runs, 95) >= 0.5 * 40  # and some long (near) ones
    assert float(np.median(runs)) < 0.5 * 40  # q = u^2: short ones outnumber long ones


def test_rain_veil_grows_with_level():
    x = torch.zeros(4, 3, 96, 96)
    veil = [float(degrade(x, rain=r, generator=_gen(0)).mean(1).flatten(1).quantile(0.02, dim=1)
                  .mean()) for r in (0.0, 30.0, 100.0, 200.0, 300.0)]
    assert veil[0] == 0.0 and veil[1] < 0.01  # light rain: (almost) no veil
    assert all(b > a for a, b in zip(veil[1:], veil[2:])), veil
    assert veil[-1] > 0.05


def test_rain_is_blended_not_clipped():
    x = torch.full((4, 3, 96, 96), 0.5)
    y = degrade(x, rain=300.0, generator=_gen(1))
    assert float(y.max()) < 0.995  # additive clipping would saturate at 1
    bright = torch.ones(4, 3, 96, 96)
    yb = degrade(bright, rain=300.0, generator=_gen(1))
    assert float(yb.min()) > 0.7  # on white, a near-white rain colour cannot go dark


def test_rain_density_grows_with_level():
    x = torch.zeros(4, 3, 96, 96)

    def streak_cover(r: float) -> float:
        g = degrade(x, rain=r, generator=_gen(0)).mean(1)
        veil = g.flatten(1).quantile(0.05, dim=1).view(-1, 1, 1)
        return float((g - veil > 0.05).float().mean())

    lit = [streak_cover(r) for r in (30.0, 100.0, 300.0)]
    assert lit[0] < lit[1] < lit[2]
    assert lit[2] > 2 * lit[0]


def test_haze_airlight_can_be_darker_than_a_bright_scene():
    from interir.data.degrade import HAZE_AIRLIGHT

    y_bright = degrade(torch.full((32, 3, 32, 32), 0.9), haze=150.0, generator=_gen(2))
    y_dark = degrade(torch.full((32, 3, 32, 32), 0.1), haze=150.0, generator=_gen(2))
    means = y_bright.mean((1, 2, 3))
    assert float(means.min()) < 0.85 and float(means.max()) > 0.9  # greyer and lighter fog
    assert float(y_dark.mean((1, 2, 3)).min()) > 0.1  # haze always lifts a dark scene
    assert float(y_dark.max()) <= HAZE_AIRLIGHT[1] + 0.03 + 1e-6


# --------------------------------------------------------------------------- validation
def test_bad_levels_and_inputs_raise():
    x = _img(2, 16, 16)
    with pytest.raises(InterIRError, match="haze"):
        degrade(x, haze=-1.0)
    with pytest.raises(InterIRError, match="noise"):
        degrade(x, noise=float("nan"))
    with pytest.raises(ValueError, match="rain"):
        degrade(x, rain=torch.ones(3))
    with pytest.raises(ValueError):
        degrade(torch.rand(3, 16, 16))
    with pytest.raises(ValueError):
        degrade((x * 255).to(torch.uint8))


# --------------------------------------------------------------------------- sample_levels
def test_combo_levels():
    assert combo_levels("haze_rain_noise") == (True, True, True)
    assert combo_levels("haze_noise") == (True, False, True)
    assert combo_levels("rain") == (False, True, False)
    with pytest.raises(InterIRError, match="snow"):
        combo_levels("snow")


def test_sample_levels_respects_combos():
    h, r, n, idx = sample_levels(4000, generator=_gen(0))
    assert h.shape == r.shape == n.shape == idx.shape == (4000,)
    assert set(idx.tolist()) == set(range(len(COMBOS)))
    for i, combo in enumerate(COMBOS):
        m = idx == i
        for lv, on, name in zip((h, r, n), combo_levels(combo), ("haze", "rain", "noise")):
            v = lv[m]
            if on:
                lo, hi = RANGES[name]
                assert float(v.min()) >= lo and float(v.max()) <= hi
                assert float(v.mean()) == pytest.approx((lo + hi) / 2, rel=0.15)
                assert float(v.max()) > 0.9 * hi
            else:
                assert torch.equal(v, torch.zeros_like(v))
    # combo frequencies are uniform
    counts = torch.bincount(idx, minlength=len(COMBOS)).float()
    assert float(counts.min()) > 0.8 * 4000 / len(COMBOS)


def test_sample_levels_subset_and_determinism():
    combos = ["rain", "haze_noise"]
    h, r, n, idx = sample_levels(500, combos, generator=_gen(1))
    assert set(idx.tolist()) == {COMBOS.index(c) for c in combos}
    assert torch.equal(h[idx == COMBOS.index("rain")], torch.zeros(int((idx == 5).sum())))
    assert torch.equal(r[idx == COMBOS.index("haze_noise")],
                       torch.zeros(int((idx == 2).sum())))
    again = sample_levels(500, combos, generator=_gen(1))
    assert all(torch.equal(a, b) for a, b in zip((h, r, n, idx), again))
    other = sample_levels(500, combos, generator=_gen(2))
    assert not torch.equal(h, other[0])
    with pytest.raises(InterIRError):
        sample_levels(2, ["fog"])
    with pytest.raises(InterIRError):
        sample_levels(2, [])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_shapes_and_is_seeded():
    x = _img(4, 64, 80).cuda()
    g = torch.Generator(device="cuda")
    h, r, n, _ = sample_levels(4, generator=g.manual_seed(0), device="cuda")
    a = degrade(x, h, r, n, generator=g.manual_seed(1))
    b = degrade(x, h, r, n, generator=g.manual_seed(1))
    assert a.is_cuda and a.shape == x.shape and torch.equal(a, b)
    # a CPU generator can drive a GPU batch and gives (nearly) the CPU result
    c = degrade(x, 50.0, 150.0, 10.0, generator=_gen(2))
    d = degrade(x.cpu(), 50.0, 150.0, 10.0, generator=_gen(2))
    assert c.is_cuda and (c.cpu() - d).abs().max() < 1e-3


# --------------------------------------------------------------------------- CLI: degrade
def _write_png(path, h=40, w=56, seed=0):
    rng = np.random.default_rng(seed)
    arr = (rng.random((h, w, 3)) * 200 + 20).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def _one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_cli_degrade_writes_seeded_image(tmp_path, capsys):
    src = tmp_path / "clean.png"
    arr = _write_png(src)
    out1, out2, out3 = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    assert cli_main(["degrade", str(src), str(out1), "--haze", "60", "--rain", "120",
                     "--noise", "15", "--seed", "4"]) == 0
    assert cli_main(["degrade", str(src), str(out2), "--haze", "60", "--rain", "120",
                     "--noise", "15", "--seed", "4"]) == 0
    assert cli_main(["degrade", str(src), str(out3), "--haze", "60", "--rain", "120",
                     "--noise", "15", "--seed", "5"]) == 0
    a, b, c = (np.asarray(Image.open(p)) for p in (out1, out2, out3))
    assert a.shape == arr.shape and np.array_equal(a, b) and not np.array_equal(a, c)
    assert "wrote" in capsys.readouterr().out
    # no levels: the image is written back unchanged
    out4 = tmp_path / "d.png"
    assert cli_main(["degrade", str(src), str(out4)]) == 0
    assert np.array_equal(np.asarray(Image.open(out4)), arr)


@pytest.mark.parametrize("opt,val", [("--haze", "151"), ("--rain", "-1"), ("--noise", "50.5"),
                                     ("--rain", "nan")])
def test_cli_degrade_bad_level(tmp_path, capsys, opt, val):
    src = tmp_path / "clean.png"
    _write_png(src)
    rc = cli_main(["degrade", str(src), str(tmp_path / "o.png"), opt, val])
    _one_line_error(capsys, rc, opt)
    assert not (tmp_path / "o.png").exists()


def test_cli_degrade_corrupt_or_missing_input(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    rc = cli_main(["degrade", str(bad), str(tmp_path / "o.png"), "--rain", "10"])
    _one_line_error(capsys, rc, "broken.png")
    rc = cli_main(["degrade", str(tmp_path / "nope.png"), str(tmp_path / "o.png")])
    _one_line_error(capsys, rc, "nope.png")
    src = tmp_path / "clean.png"
    _write_png(src)
    rc = cli_main(["degrade", str(src), str(tmp_path / "missing_dir" / "o.png")])
    _one_line_error(capsys, rc, "missing_dir")


# --------------------------------------------------------------------------- CLI: make-testset
def _clean_folder(tmp_path, n=4, sizes=None):
    d = tmp_path / "clean"
    d.mkdir()
    sizes = sizes or [(40 + 4 * i, 52 - 2 * i) for i in range(n)]
    for i, (h, w) in enumerate(sizes):
        _write_png(d / f"img{i}.png", h, w, seed=i)
    return d


def _read_manifest(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_make_testset_layout_and_manifest(tmp_path, capsys):
    clean = _clean_folder(tmp_path, sizes=[(40, 52), (20, 30), (48, 48), (36, 60)])
    out = tmp_path / "ts"
    rc = cli_main(["make-testset", "--clean", str(clean), "--out", str(out), "--per-combo", "3",
                   "--seed", "5", "--size", "32"])
    assert rc == 0, capsys.readouterr().err
    rows = _read_manifest(out / "manifest.csv")
    assert list(rows[0].keys()) == ["combo", "file", "source", "haze", "rain", "noise", "seed"]
    assert len(rows) == 3 * len(COMBOS)
    for combo in COMBOS:
        mine = [r for r in rows if r["combo"] == combo]
        assert len(mine) == 3 and len({r["source"] for r in mine}) == 3  # no repeats
        inputs = sorted(p.name for p in (out / combo / "input").iterdir())
        targets = sorted(p.name for p in (out / combo / "target").iterdir())
        assert inputs == targets == sorted(r["file"] for r in mine)
        on = combo_levels(combo)
        for r in mine:
            for name, active in zip(("haze", "rain", "noise"), on):
                v = float(r[name])
                lo, hi = RANGES[name]
                assert (lo <= v <= hi) if active else v == 0.0
            x = np.asarray(Image.open(out / combo / "input" / r["file"]))
            y = np.asarray(Image.open(out / combo / "target" / r["file"]))
            assert x.shape == y.shape == (32, 32, 3)
    # the 20x30 source was padded up to 32x32 (reflect), not stretched
    src1 = [r for r in rows if r["source"] == "img1.png"]
    assert src1  # (seed 5 picks it at least once)
    if src1:
        t = np.asarray(Image.open(out / src1[0]["combo"] / "target" / src1[0]["file"]))
        orig = np.asarray(Image.open(clean / "img1.png"))
        assert np.array_equal(t[6:26, 1:31], orig)


def test_make_testset_deterministic_and_reproducible_with_degrade(tmp_path, capsys):
    clean = _clean_folder(tmp_path)
    # a 16-bit source: the target PNG is 8-bit, and input must be degrade(target) exactly
    deep = (np.random.default_rng(9).random((30, 30)) * 65535).astype(np.uint16)
    Image.fromarray(deep).save(clean / "deep16.png")
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, "1"), (b, "1"), (c, "2")):
        assert cli_main(["make-testset", "--clean", str(clean), "--out", str(out),
                         "--per-combo", "2", "--seed", seed, "--size", "24"]) == 0
    ra, rb, rc_ = (_read_manifest(p / "manifest.csv") for p in (a, b, c))
    assert ra == rb and ra != rc_
    for r in ra:
        for part in ("input", "target"):
            assert (a / r["combo"] / part / r["file"]).read_bytes() == \
                   (b / r["combo"] / part / r["file"]).read_bytes()
    # any manifest row is reproduced exactly by `interir degrade` on its target
    rows = [r for r in ra if r["combo"] == "haze_rain_noise"]
    rows += [r for r in ra if r["source"] == "deep16.png"][:1]
    assert any(r["source"] == "deep16.png" for r in rows)
    for i, r in enumerate(rows):
        redo = tmp_path / f"redo{i}.png"
        assert cli_main(["degrade", str(a / r["combo"] / "target" / r["file"]), str(redo),
                         "--haze", r["haze"], "--rain", r["rain"], "--noise", r["noise"],
                         "--seed", r["seed"]]) == 0
        assert np.array_equal(np.asarray(Image.open(redo)),
                              np.asarray(Image.open(a / r["combo"] / "input" / r["file"])))


def test_make_testset_refuses_non_empty_out(tmp_path, capsys):
    clean = _clean_folder(tmp_path)
    out = tmp_path / "ts"
    out.mkdir()
    keep = out / "precious.txt"
    keep.write_text("mine")
    rc = cli_main(["make-testset", "--clean", str(clean), "--out", str(out), "--per-combo", "1"])
    _one_line_error(capsys, rc, "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    # --overwrite writes, keeps unrelated files, and removes only the old run's outputs
    assert cli_main(["make-testset", "--clean", str(clean), "--out", str(out), "--per-combo",
                     "3", "--overwrite", "--size", "16"]) == 0
    assert cli_main(["make-testset", "--clean", str(clean), "--out", str(out), "--per-combo",
                     "1", "--overwrite", "--size", "16"]) == 0
    assert keep.read_text() == "mine"
    for combo in COMBOS:
        assert len(list((out / combo / "input").iterdir())) == 1
    assert len(_read_manifest(out / "manifest.csv")) == len(COMBOS)


def test_make_testset_errors(tmp_path, capsys):
    clean = _clean_folder(tmp_path, n=2)
    rc = cli_main(["make-testset", "--clean", str(clean), "--out", str(tmp_path / "o"),
                   "--per-combo", "3"])
    _one_line_error(capsys, rc, "--per-combo")
    assert not (tmp_path / "o").exists()
    rc = cli_main(["make-testset", "--clean", str(tmp_path / "none"), "--out",
                   str(tmp_path / "o")])
    _one_line_error(capsys, rc, "none")
    rc = cli_main(["make-testset", "--clean", str(clean), "--out", str(tmp_path / "o"),
                   "--size", "4"])
    _one_line_error(capsys, rc, "--size")


def test_make_testset_skips_corrupt_source(tmp_path, capsys):
    clean = _clean_folder(tmp_path, n=3)
    (clean / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "ts"
    assert cli_main(["make-testset", "--clean", str(clean), "--out", str(out), "--per-combo",
                     "3", "--size", "16"]) == 0
    assert "zz_broken.jpg" in capsys.readouterr().out
    rows = _read_manifest(out / "manifest.csv")
    assert len(rows) == 3 * len(COMBOS)
    assert "zz_broken.jpg" not in {r["source"] for r in rows}
