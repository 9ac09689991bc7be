"""Regenerate the example images shipped with the explorer (deterministic).

Clean sources: public-domain / CC0 photos bundled with scikit-image (see LICENSES.md), resized
to 384 px on the long side and saved as ``clean/<name>.png``. Degraded versions are made with
``interir.data.degrade.degrade_image`` (the same code as ``interir degrade``) and saved as
``<name>_<combo>.png``; ``examples.json`` records the levels, seeds and clean reference of each,
so the app can measure PSNR/SSIM when one of them is restored.

    python examples/make_examples.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

CLEAN = {
    "astronaut": "astronaut", "coffee": "coffee", "chelsea": "chelsea", "rocket": "rocket",
}
DEGRADED = [  # (source, haze, rain, noise, seed)
    ("chelsea", 0, 220, 0, 1),
    ("coffee", 90, 0, 25, 2),
    ("rocket", 80, 180, 0, 3),
    ("astronaut", 70, 150, 20, 4),
    ("coffee", 0, 0, 35, 5),
]


def combo_name(h: float, r: float, n: float) -> str:
    return "_".join(c for c, v in (("haze", h), ("rain", r), ("noise", n)) if v > 0) or "clean"


def main() -> None:
    import skimage.data as skd

    from interir.data.degrade import degrade_image

    (HERE / "clean").mkdir(exist_ok=True)
    entries = []
    clean_arrays = {}
    for name, fn in CLEAN.items():
        img = Image.fromarray(getattr(skd, fn)())
        s = 384 / max(img.size)
        img = img.resize((round(img.size[0] * s), round(img.size[1] * s)), Image.Resampling.LANCZOS)
        img.save(HERE / "clean" / f"{name}.png", optimize=True)
        clean_arrays[name] = np.asarray(img).astype(np.float32) / 255.0
    for src, h, r, n, seed in DEGRADED:
        out = degrade_image(clean_arrays[src], h, r, n, seed=seed)
        fname = f"{src}_{combo_name(h, r, n)}.png"
        Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)).save(HERE / fname, optimize=True)
        entries.append({"file": fname, "clean": f"clean/{src}.png", "combo": combo_name(h, r, n),
                        "haze": h, "rain": r, "noise": n, "seed": seed})
    (HERE / "examples.json").write_text(json.dumps(entries, indent=1) + "\n")
    print(f"wrote {len(CLEAN)} clean and {len(entries)} degraded examples to {HERE}")


if __name__ == "__main__":
    main()
