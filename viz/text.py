"""The explanations shown above each panel, shared by the app and the HTML report (Markdown with
``$...$`` maths)."""

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
    "map $A$, and the kernel used for *this* image is $W \\odot A$. The overlay shows $M$ (at "
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
