"""The README's figures for the shipped models are the ones their eval.json measured (so new
weights cannot ship with last stage's numbers in the README)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMBOS = ("haze_rain_noise", "haze_rain", "haze_noise", "rain_noise", "haze", "rain", "noise")
ROWS = {  # README table row label -> (checkpoint, part of its eval.json)
    "`interir-n6` (default)": ("interir-n6", None),
    "`interir-n6-stdconv` (its twin)": ("interir-n6-stdconv", None),
    "`interir-tiny` (n = 2)": ("interir-tiny", None),
    "`interir-tiny-stdconv` (its twin)": ("interir-tiny-stdconv", None),
    "degraded input": ("interir-n6", "input"),
    "classical (DCP + NLM)": ("interir-n6", "classical"),
}


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _eval(checkpoint: str) -> dict:
    return json.loads((ROOT / "checkpoints" / checkpoint / "eval.json").read_text())


def _shipped_section() -> str:
    text = _readme()
    start = text.index("## The shipped models")
    return text[start:text.index("\n## ", start + 1)]


@pytest.mark.parametrize("label", list(ROWS))
def test_readme_psnr_table_row_is_the_measured_one(label):
    checkpoint, part = ROWS[label]
    res = _eval(checkpoint)
    res = res[part] if part else res
    line = next((ln for ln in _shipped_section().splitlines() if ln.startswith(f"| {label} |")), None)
    assert line is not None, f"README: no PSNR table row for {label}"
    shown = [float(x) for x in line.split("|")[2:-1]]
    measured = [res["combos"][c]["psnr"] for c in COMBOS] + [res["average"]["psnr"]]
    assert shown == pytest.approx(measured, abs=0.005), f"{label}: README {shown}, eval.json {measured}"


def test_readme_headline_figures_of_the_default_model_are_the_measured_ones():
    res = _eval("interir-n6")
    text = " ".join(_shipped_section().split())  # line breaks as spaces
    gain = res["average"]["psnr"] - res["input"]["average"]["psnr"]
    assert f"+{gain:.2f} dB over the input on average" in text
    assert f"SSIM {res['average']['ssim']:.3f}" in text
    assert f"AWGN σ = 25 on the 40 test photos: {res['awgn']['average']['psnr']:.2f} dB" in text
    curve = " → ".join(f"{p:.2f}" for p in res["iterations"]["all_pairs"]["psnr"])
    assert f"({curve} dB)" in text, "README: the early-exit PSNR curve is not the measured one"
    pooled = res["iterations"]["all_pairs"]
    assert re.search(rf"on \*\*{round(100 * pooled['psnr_non_decreasing'])} %\*\* of the pairs", text)
    assert re.search(rf"every step on \*\*{round(100 * pooled['residual_decreasing'])} %\*\*", text)
