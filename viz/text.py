"""The explanations shown above each panel, shared by the app and the HTML report (Markdown with
``$...$`` maths), :func:`curve_notes`, which says in words what each iteration curve does, and
:func:`step_text`, the line under the iteration frames."""
from __future__ import annotations

from typing import Any

import numpy as np

INTRO = (
    "InterIR restores photos hit by any mix of **haze, rain and noise** by *unfolding* an "
    "optimisation algorithm: each network block is one iteration of an improved semi-smooth "
    "Newton solver for the degradation model $D = A\\,I\\,B + N$ (Eq. 3), so every intermediate "
    "variable has a meaning. Restore an image, then open the panels below to watch the "
    "iterations and look inside them."
)

INPUT = (
    "Upload a degraded photo (PNG, JPEG, TIFF, WebP, BMP; grayscale, 16-bit, RGBA, CMYK, palette "
    "and EXIF-rotated files are fine), pick an example, or make one in the **degradation lab**, "
    "which keeps the clean image so PSNR/SSIM can be measured. Images longer than 1024 px are "
    "downscaled."
)

RESTORE = (
    "The restored image is $\\hat I = I_R + D$: the network predicts a residual that is added to "
    "the input (Sec. 3.1). Drag the handle to compare before and after."
)

ITERATIONS = (
    "Each IPBlock performs one semi-smooth Newton step $I_{k+1} = I_k - \\eta\\,H(I_k)$ (RESM, "
    "Eq. 12) with the current degradation matrices $A_k, B_k$ and multiplier $\\Lambda_k$, then "
    "updates $A, B$ (DMUM, Eq. 13) and $\\Lambda$ (MUM, Eq. 14). The image at iteration $k$ "
    "is $I_{k+1}$ decoded through the output head (early exit); the last $k$ is the final "
    "output. Curves: the data term $\\|A_k I_{k+1} B_k - z\\|^2/N$ of Eq. 4 in feature space, the "
    "relative step, and PSNR/SSIM against the clean reference when one is known."
)

MATRICES = (
    "The degradation is factorised per feature channel into $A \\in \\mathbb{R}^{h\\times h}$ and "
    "$B \\in \\mathbb{R}^{w\\times w}$ (Eq. 3, $h, w = H/4, W/4$): $A_0 = I_0 I_0^T/\\|\\cdot\\|$, "
    "$B_0 = I_0^T I_0/\\|\\cdot\\|$ (Eq. 11), re-estimated by every DMUM (Eq. 13). The spectra show "
    "how concentrated (low-rank) each matrix is; dashed: at $k = 0$. $\\Lambda_k$ is the "
    "augmented-Lagrangian multiplier (Eqs. 5 and 14): per channel (red > 0 > blue, each channel "
    "scaled on its own) and as its first three principal components in R, G, B (one colour basis "
    "for all $k$)."
)

EXPLAIN = (
    "Every EPBlock's 3×3 depthwise convolution is an **explainable convolution** (Eqs. 16–20): a "
    "binary mask $M = 1[x \\ge \\tau]$ with a learned per-channel threshold $\\tau$ marks the "
    "positions that drive it, $M$ is average-pooled to $K\\times K$ and softmaxed into an attention "
    "map $A$, and the kernel used for *this* image is $W \\odot A$ ($W \\odot K^2 A$ for weights "
    "trained as `explain_unit`, which keep $W$ at a plain kernel's scale). The overlay shows $M$ (at "
    "feature resolution, ×4 upsampled) on the input; uniform attention would be $1/K^2$."
)

EMBEDDING = (
    "The degradation embedding (spatial mean and standard deviation of each RESM's learned "
    "shrinkage $S(\\Lambda \\oplus EP(I))$, over all iterations) summarises what the solver had to "
    "correct. Reference images with each of the seven degradation combinations were embedded "
    "ahead of time and mapped to 2-D with t-SNE (hover a point to see it). Your image is placed "
    "by inverse-distance-weighted **k-nearest-neighbour interpolation** of the neighbours' "
    "2-D positions (no t-SNE refit), and its combination is diagnosed by their weighted vote."
)

INTERVENTIONS = (
    "What does each part contribute? **Early exit** stops after iteration $k$; **modulation off** "
    "replaces every attention map by the uniform $1/K^2$ (the kernel loses its input-specific "
    "modulation, Eq. 19); **Λ = 0** zeroes the multiplier at initialisation (Eq. 11) and after "
    "every MUM (Eq. 14). Each variant is rerun and compared with the normal result."
)

EXPORT = (
    "Download the trace bundle (`.npz`, the layout of `interir trace` at display precision: 8-bit "
    "images, float16 solver variables), its JSON summary, and a static HTML report of these "
    "panels that works offline."
)

TWIN = (
    "The paper's Table 4 ablation on your image: the **standard-convolution twin** (same "
    "architecture, data, seed and training recipe, but plain depthwise convolutions instead of "
    "explainable ones) restores the same input. Both outputs, their absolute difference, and "
    "PSNR/SSIM when a clean reference is known; a note below says when the two were not trained "
    "to the same point (stage and iteration), and when the explainable model started from the "
    "twin's weights."
)

WHY = (
    "Click a point on the restored image (a disc of radius 8 px around it), click two corners of a "
    "box, or type the coordinates, "
    "and see (a) which pixels of the **degraded input** the region's output depends on (an "
    "attribution map through the whole unfolding; the method is named below the map), (b) how "
    "much each iteration $k$ changed that region, and (c) the explainable-convolution channels "
    "whose mask $M$ is most active there."
)

WHY_START = "Click the restored image to choose a region."


#: A PSNR drop up to this is "flat" (the tolerance of ``interir eval --iterations``'s count of
#: non-decreasing pairs, interir.eval.MONOTONE_TOL_DB; viz does not import interir).
FLAT_DB = 0.05


#: A mean-brightness difference up to this (on 0-255) is "about right" (the model issue's target).
BRIGHTNESS_OK = 2.0


def brightness_line(inp: np.ndarray, out: np.ndarray, reference: np.ndarray | None = None) -> str:
    """The restore summary's brightness line: mean of the input and output (8-bit, all channels)
    and, with a clean reference, how far the output's mean is from it (the model's largest known
    error: haze and heavy rain come out too dark or too bright)."""
    m_in, m_out = float(np.mean(inp, dtype=np.float64)), float(np.mean(out, dtype=np.float64))
    line = f"Mean brightness (0–255): input {m_in:.1f} → output {m_out:.1f}"
    if reference is None:
        return line + "."
    m_ref = float(np.mean(reference, dtype=np.float64))
    d = m_out - m_ref
    if abs(d) < 0.05:
        return f"{line}, clean reference {m_ref:.1f}."
    mark = "" if abs(d) <= BRIGHTNESS_OK else "⚠️ "
    return (f"{line}, clean reference {m_ref:.1f}: {mark}the output is {abs(d):.1f}/255 "
            f"{'darker' if d < 0 else 'brighter'} than the clean image.")


def _trend(values: np.ndarray) -> tuple[float, float, int]:
    """(first, last, number of steps that went up) of a finite series."""
    v = values[np.isfinite(values)]
    return float(v[0]), float(v[-1]), int(np.sum(np.diff(v) > 0))


def curve_notes(ct: Any) -> str:
    """One line per iteration curve: what it measures, how it moved from k = 0 to k = n, and, in
    words, when it goes the way an optimiser's would not (a data term or step rising, a quality
    metric falling)."""
    n = ct.n_iter - 1
    lines = []
    f0, f1, up = _trend(np.asarray(ct.fidelity, float))
    line = (f"**Data fidelity** $\\|A_k I_{{k+1}} B_k - z\\|^2/N$ (feature space, lower = the estimate "
            f"explains the degraded features better): {f0:.3g} at k = 0 → {f1:.3g} at k = {n}.")
    if f1 > f0 or up:
        line += (f" ⚠️ It **rises** ({up} of {n} steps go up): a solver minimising this data term would make "
                 "it fall. The learned steps also follow the prior (Λ, the shrinkage), and A, B are "
                 "re-estimated every iteration, so this is not a plain descent on a fixed objective.")
    lines.append(line)
    s0, s1, s_up = _trend(np.asarray(ct.step_norm, float))
    line = (f"**Relative step** $\\|I_{{k+1}} - I_k\\|/\\|I_k\\|$ (how far each iteration moves the "
            f"features): {s0:.3g} → {s1:.3g}.")
    if s_up:
        line += (f" ⚠️ It **grows** in {s_up} of {n} steps: a converging optimiser's steps shrink; here a "
                 "later iteration changes the image more than an earlier one.")
    lines.append(line)
    for key, label, fmt in (("psnr", "PSNR", "{:.2f} dB"), ("ssim", "SSIM", "{:.3f}")):
        vals = getattr(ct, key)
        if vals is None or not np.isfinite(vals).any():
            continue
        base = getattr(ct, f"input_{key}")
        v0, v1, v_up = _trend(np.asarray(vals, float))
        drops = -np.diff(np.asarray(vals, float)[np.isfinite(vals)])
        down, worst = int(np.sum(drops > 0)), float(drops.max(initial=0.0))
        line = (f"**{label}** against the clean reference (higher = closer): input "
                f"{fmt.format(base) if base is not None else '–'}, k = 0 {fmt.format(v0)} → k = {n} "
                f"{fmt.format(v1)}.")
        if down and key == "psnr" and worst <= FLAT_DB:
            line += (f" It dips in {down} of {n} steps, by at most {worst:.2f} dB: flat within the "
                     f"{FLAT_DB:g} dB the evaluation allows.")
        elif down:
            line += (f" ⚠️ It **falls** in {down} of {n} steps (by up to {fmt.format(worst)}): that iteration "
                     "moved the image away from the clean one, though training asked for the opposite.")
        if base is not None and v1 < base:
            line += " ⚠️ The output is **worse than the degraded input** by this measure."
        lines.append(line)
    if ct.psnr is None:
        lines.append("No clean reference: PSNR and SSIM need the degradation lab, an example or a reference.")
    return "  \n".join(lines)


def step_text(ct: Any, k: int) -> str:
    """The line under iteration k's frames (Markdown): the curves' values at k and the change
    map's colour scale."""
    from .images import change_scales

    first, rest = change_scales(ct)
    scale = first if k == 0 else rest
    last = " (the output)" if k == ct.n_iter - 1 else ""
    what = "k = 0 is compared with the input, on its own scale" if k == 0 else "same scale for every k ≥ 1"
    md = (f"**k = {k}{last}** · fidelity {ct.fidelity[k]:.4g} · relative step {ct.step_norm[k]:.4g}"
          f" · change: mean |Δ| over RGB, square-root colour scale, brightest = {scale * 255:.1f}/255"
          f" or more ({what})")
    if ct.psnr is not None:
        md += f" · PSNR {ct.psnr[k]:.2f} dB"
        if ct.ssim is not None and np.isfinite(ct.ssim[k]):
            md += f" · SSIM {ct.ssim[k]:.3f}"
    return md
