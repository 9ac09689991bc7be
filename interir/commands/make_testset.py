"""interir make-testset --clean DIR --out DIR [--per-combo N] [--seed S] [--size S] [--overwrite]"""
from __future__ import annotations

import argparse
import csv
import io
import random
from pathlib import Path

import numpy as np

from ..data.datasets import centre_square
from ..errors import InterIRError
from ..fileio import atomic_write_text

HELP = ("build a synthetic evaluation set: OUT/<combo>/input + target for the 7 haze / rain / "
        "noise combinations, plus OUT/manifest.csv")

MANIFEST = "manifest.csv"
FIELDS = ("combo", "file", "source", "haze", "rain", "noise", "seed")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clean", required=True, metavar="DIR", help="folder of clean images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    p.add_argument("--per-combo", type=int, default=10, metavar="N",
                   help="images per combination, drawn without replacement (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, default=256, metavar="S",
                   help="centre crop S x S; smaller images are reflect-padded (default 256)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow a non-empty OUT: files listed in its old manifest.csv are "
                        "removed, other files are left alone")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="skip clean images larger than N pixels (default 16000000, or "
                        "INTERIR_MAX_PIXELS)")


def image_seed(seed: int, combo_index: int, k: int) -> int:
    """Per-image degradation seed (the manifest's ``seed`` column)."""
    return (int(seed) * 1_000_003 + combo_index * 10_007 + k) % (2 ** 63)


def _remove_old_outputs(out: Path) -> int:
    """Delete the files an earlier run listed in OUT/manifest.csv (only those); returns count."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        return 0
    removed = 0
    try:
        with manifest.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return 0
    for row in rows:
        combo, name = row.get("combo") or "", row.get("file") or ""
        if not combo or not name or "/" in name or "\\" in name or ".." in (combo, name):
            continue
        for part in ("input", "target"):
            f = out / combo / part / name
            if f.is_file():
                f.unlink()
                removed += 1
    return removed


def _check_args(args: argparse.Namespace) -> tuple[Path, Path, list[Path]]:
    """(clean folder, output folder, clean files) after checking the options; clears old
    outputs with --overwrite."""
    from ..data.datasets import list_images

    if args.per_combo < 1:
        raise InterIRError(f"--per-combo must be >= 1, got {args.per_combo}")
    if args.size < 8:
        raise InterIRError(f"--size must be >= 8, got {args.size}")
    if args.max_pixels is not None and args.max_pixels <= 0:
        raise InterIRError("--max-pixels must be positive")
    clean_dir, out = Path(args.clean), Path(args.out)
    files = list_images(clean_dir)
    if not files:
        raise InterIRError(f"{clean_dir}: no images found")
    if len(files) < args.per_combo:
        raise InterIRError(f"{clean_dir}: {len(files)} image(s), fewer than --per-combo "
                           f"{args.per_combo}")
    if out.exists() and not out.is_dir():
        raise InterIRError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise InterIRError(f"{out}: folder is not empty; choose a new folder or pass "
                               "--overwrite")
        _remove_old_outputs(out)
    return clean_dir, out, files


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.degrade import COMBOS, degrade_image, sample_levels
    from ..imageio import load_image, save_image, to_uint8

    clean_dir, out, files = _check_args(args)
    # Decode each used source once; unreadable sources are skipped (and replaced) with a note.
    cache: dict[Path, np.ndarray | None] = {}
    skipped: list[str] = []

    def clean_crop(path: Path) -> np.ndarray | None:
        if path not in cache:
            try:
                img = load_image(path, max_pixels=args.max_pixels)
                # quantise as the saved target will be, so input = degrade(target) exactly
                cache[path] = to_uint8(centre_square(img, args.size)).astype(np.float32) / 255.0
            except InterIRError as exc:
                cache[path] = None
                skipped.append(str(exc))
        return cache[path]

    rows = []
    for ci, combo in enumerate(COMBOS):
        order = list(files)
        random.Random(image_seed(args.seed, ci, 0)).shuffle(order)
        combo_dirs = [out / combo / "input", out / combo / "target"]
        for d in combo_dirs:
            d.mkdir(parents=True, exist_ok=True)
        used_names: set[str] = set()
        k = 0
        for src in order:
            if k == args.per_combo:
                break
            img = clean_crop(src)
            if img is None:
                continue
            s = image_seed(args.seed, ci, k)
            g = torch.Generator().manual_seed(s)
            haze, rain, noise, _ = sample_levels(1, [combo], generator=g)
            lv = (float(haze[0]), float(rain[0]), float(noise[0]))
            name = f"{src.stem}.png"
            if name in used_names:  # e.g. a.jpg and a.png in the clean folder
                name = f"{src.stem}_{src.suffix.lstrip('.').lower()}.png"
            used_names.add(name)
            degraded = degrade_image(img, *lv, seed=s)
            save_image(degraded, combo_dirs[0] / name)
            save_image(img, combo_dirs[1] / name)
            rows.append({"combo": combo, "file": name, "source": src.name,
                         "haze": repr(lv[0]), "rain": repr(lv[1]), "noise": repr(lv[2]),
                         "seed": s})
            k += 1
        if k < args.per_combo:
            raise InterIRError(f"{clean_dir}: only {k} readable image(s), --per-combo asks for "
                               f"{args.per_combo}")
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / MANIFEST, buf.getvalue())
    for msg in skipped:
        print(f"warning: skipped {msg}")
    print(f"wrote {len(rows)} pairs ({args.per_combo} per combo, {len(COMBOS)} combos, "
          f"{args.size}x{args.size}) and {MANIFEST} to {out}")
    return 0
