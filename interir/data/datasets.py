"""Image folders as PyTorch datasets.

* :class:`CleanImageDataset`: clean photos for on-the-fly degradation (training); every image
  is decoded once and kept in memory as uint8; random patches with flips.
* :class:`PairedFolderDataset`: degraded/clean pairs (evaluation and real benchmarks such as
  Rain100H, Test100, Test1200, RESIDE SOTS), decoded on access.
* :func:`discover_eval_sets`: the evaluation layout of docs/design.md.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InterIRError
from ..imageio import load_image, to_uint8
from .degrade import COMBOS

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}

#: Accepted (input, target) folder names of a paired set, tried in this order
#: (case-insensitive).
PAIR_DIRS: tuple[tuple[str, str], ...] = (("input", "target"), ("rain", "norain"),
                                          ("rainy", "norain"), ("hazy", "gt"),
                                          ("hazy", "clear"))


def list_images(root: str | Path) -> list[Path]:
    """Image files (by extension, case-insensitive) directly inside ``root``, sorted by name.
    Hidden files are ignored. Raises :class:`InterIRError` if ``root`` is not a folder."""
    root = Path(root)
    if not root.exists():
        raise InterIRError(f"{root}: no such folder")
    if not root.is_dir():
        raise InterIRError(f"{root}: not a folder")
    return sorted(p for p in root.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))


def centre_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre crop (H,W,3) to size x size, reflect-padding (edge for 1-px sides) if smaller."""
    h, w, _ = img.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        mode = "reflect" if min(h, w) > 1 else "edge"
        img = np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode=mode)
        h, w, _ = img.shape
    top, left = (h - size) // 2, (w - size) // 2
    return img[top:top + size, left:left + size]


def _to_uint8_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(to_uint8(img).transpose(2, 0, 1)))


def _pad_to(img: torch.Tensor, size: int) -> torch.Tensor:
    """Pad a (3,H,W) uint8 image up to at least size x size (centred; reflect where possible,
    edge-replicate beyond that)."""
    _, h, w = img.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph == 0 and pw == 0:
        return img
    arr = img.numpy()
    pad = ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
    # numpy's reflect repeats the reflection for pads larger than the image; a 1-pixel side
    # cannot be reflected, so replicate it
    mode = "reflect" if min(h, w) > 1 else "edge"
    return torch.from_numpy(np.ascontiguousarray(np.pad(arr, pad, mode=mode)))


def _names(items: Iterable[str] | None) -> set[str] | None:
    return None if items is None else {Path(str(n)).name for n in items}


class CleanImageDataset(Dataset):
    """Clean images kept in memory (uint8); items are (3,P,P) float patches in [0,1].

    ``root`` is a folder (non-recursive) or a list of image paths. ``files`` keeps only the
    listed file names (or stems); ``exclude`` drops them (e.g. a held-out validation split).
    Unreadable images are skipped with a warning; no readable image is an error.
    """

    def __init__(self, root: str | Path | list[Path], patch_size: int = 256,
                 augment: bool = True, files: list[str] | None = None,
                 exclude: list[str] | None = None) -> None:
        if int(patch_size) < 1:
            raise InterIRError(f"patch size must be >= 1, got {patch_size}")
        self.patch_size = int(patch_size)
        self.augment = bool(augment)
        if isinstance(root, (str, Path)):
            paths = list_images(root)
            where = str(root)
        else:
            paths = [Path(p) for p in root]
            where = "the given file list"
        keep, drop = _names(files), _names(exclude)
        if keep is not None:
            found = {p.name for p in paths} | {p.stem for p in paths}
            missing = sorted(n for n in keep if n not in found and Path(n).stem not in found)
            if missing:
                more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
                raise InterIRError(f"{where}: listed image(s) not found: "
                                   f"{', '.join(missing[:5])}{more}")
            paths = [p for p in paths if p.name in keep or p.stem in keep]
        if drop:
            paths = [p for p in paths if p.name not in drop and p.stem not in drop]
        self.paths: list[Path] = []
        self.images: list[torch.Tensor] = []  # (3,H,W) uint8, padded to >= patch size
        for p in paths:
            try:
                img = load_image(p)
            except InterIRError as exc:
                warnings.warn(f"skipping unreadable image: {exc}", stacklevel=2)
                continue
            self.paths.append(p)
            self.images.append(_pad_to(_to_uint8_chw(img), self.patch_size))
        if not self.images:
            raise InterIRError(f"{where}: no readable images "
                               f"(looked for {', '.join(sorted(IMAGE_EXTS))})")

    def __len__(self) -> int:
        return len(self.images)

    def _patch(self, img: torch.Tensor, top: int, left: int, hflip: bool, vflip: bool
               ) -> torch.Tensor:
        p = self.patch_size
        out = img[:, top:top + p, left:left + p]
        if hflip:
            out = out.flip(-1)
        if vflip:
            out = out.flip(-2)
        return out.float().div_(255.0)

    def __getitem__(self, i: int) -> torch.Tensor:
        """Patch of image ``i``: random crop and flips (torch's global RNG) if ``augment``,
        otherwise the centre crop."""
        img = self.images[i]
        _, h, w = img.shape
        p = self.patch_size
        if self.augment:
            top = int(torch.randint(h - p + 1, ()))
            left = int(torch.randint(w - p + 1, ()))
            flips = torch.randint(2, (2,))
            return self._patch(img, top, left, bool(flips[0]), bool(flips[1]))
        return self._patch(img, (h - p) // 2, (w - p) // 2, False, False)

    def sample_batch(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """(B,3,P,P) float batch whose image indices, crops and flips (flips only if
        ``augment``) are all drawn from ``generator``: a pure function of its state."""
        idx = torch.randint(len(self.images), (batch,), generator=generator).tolist()
        pos = torch.rand(batch, 2, generator=generator, dtype=torch.float64).tolist()
        flips = torch.randint(2, (batch, 2), generator=generator).tolist()
        out = torch.empty(batch, 3, self.patch_size, self.patch_size)
        p = self.patch_size
        for j, (i, (fy, fx), (fh, fv)) in enumerate(zip(idx, pos, flips)):
            img = self.images[i]
            _, h, w = img.shape
            top = min(h - p, int(fy * (h - p + 1)))
            left = min(w - p, int(fx * (w - p + 1)))
            out[j] = self._patch(img, top, left, bool(fh) and self.augment,
                                 bool(fv) and self.augment)
        return out


def _find_pair_dirs(root: Path) -> tuple[Path, Path] | None:
    """(input_dir, target_dir) inside ``root`` by the accepted names, or None."""
    if not root.is_dir():
        return None
    subdirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    for a, b in PAIR_DIRS:
        if a in subdirs and b in subdirs:
            return subdirs[a], subdirs[b]
    return None


def _match_pairs(inputs: Sequence[Path], targets: Sequence[Path]
                 ) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Pair inputs with targets by exact stem, else by the input stem's part before the first
    '_' (RESIDE: ``0001_0.8_0.2.png`` -> ``0001.png``). Returns (pairs, unmatched inputs)."""
    by_stem: dict[str, Path] = {}
    for t in targets:
        by_stem.setdefault(t.stem, t)
    pairs, unmatched = [], []
    for p in inputs:
        t = by_stem.get(p.stem)
        if t is None and "_" in p.stem:
            t = by_stem.get(p.stem.split("_", 1)[0])
        if t is None:
            unmatched.append(p)
        else:
            pairs.append((p, t))
    return pairs, unmatched


def _header_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF rotation applied) from the file header only.
    Raises :class:`InterIRError` if the file is missing, empty or not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            raise InterIRError(f"{path}: file is empty")
        with Image.open(path) as img:
            w, h = img.size
            try:
                orientation = img.getexif().get(0x0112, 1)
            except Exception:  # noqa: BLE001 - a broken EXIF block only loses the rotation
                orientation = 1
    except InterIRError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise InterIRError(f"{path}: not a readable image ({exc})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


class PairedFolderDataset(Dataset):
    """Degraded/clean pairs from ``root/input`` + ``root/target`` (also ``rain|rainy/ norain/``,
    ``hazy/ GT/``, ``hazy/ clear/``), matched by file stem (extensions may differ).

    Items are ``(input (3,H,W), target (3,H,W), name)`` float in [0,1]; ``name`` is the input
    file name. Construction reads only the file headers: files that are not readable images,
    inputs without a target and pairs whose sizes differ are skipped with a warning naming
    them. Pixels are decoded on access (a file corrupt beyond its header raises
    :class:`InterIRError` naming it).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        dirs = _find_pair_dirs(self.root)
        if dirs is None:
            raise InterIRError(
                f"{self.root}: expected paired folders "
                f"{' or '.join(f'{a}/ + {b}/' for a, b in PAIR_DIRS)}")
        self.input_dir, self.target_dir = dirs
        pairs, unmatched = _match_pairs(list_images(self.input_dir), list_images(self.target_dir))
        if unmatched:
            shown = ", ".join(p.name for p in unmatched[:5])
            more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
            warnings.warn(f"{self.input_dir}: no target image for {shown}{more}; skipped",
                          stacklevel=2)
        self.names: list[str] = []
        self.pairs: list[tuple[Path, Path]] = []
        sizes: dict[Path, tuple[int, int] | None] = {}
        for inp, tgt in pairs:
            bad = None
            for f in (inp, tgt):
                if f not in sizes:
                    try:
                        sizes[f] = _header_size(f)
                    except InterIRError as exc:
                        sizes[f] = None
                        warnings.warn(f"skipping unreadable image: {exc}", stacklevel=2)
                if sizes[f] is None:
                    bad = f
            if bad is not None:
                continue
            if sizes[inp] != sizes[tgt]:
                (wi, hi), (wt, ht) = sizes[inp], sizes[tgt]  # type: ignore[misc]
                warnings.warn(f"skipping {inp}: size {wi}x{hi} differs from its target "
                              f"{tgt.name} ({wt}x{ht})", stacklevel=2)
                continue
            self.names.append(inp.name)
            self.pairs.append((inp, tgt))
        if not self.pairs:
            raise InterIRError(f"{self.root}: no readable input/target pairs")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        inp, tgt = self.pairs[i]
        x, y = load_image(inp), load_image(tgt)
        if x.shape != y.shape:  # header and decoded sizes disagree: a malformed file
            raise InterIRError(f"{inp}: decoded size {x.shape[1]}x{x.shape[0]} differs from "
                               f"its target {tgt} ({y.shape[1]}x{y.shape[0]})")
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # noqa: E731
        return to_t(x), to_t(y), self.names[i]


def manifest_sources(root: str | Path) -> dict[tuple[str, str], str]:
    """``{(combo, file): source photo}`` from the ``manifest.csv`` that ``make-testset`` writes
    into ``root``."""
    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise InterIRError(f"{root}: no manifest.csv (a folder written by `interir make-testset`)")
    with open(path, newline="") as fh:
        return {(r["combo"], r["file"]): r["source"] for r in csv.DictReader(fh)}


def discover_eval_sets(root: str | Path) -> dict[str, PairedFolderDataset]:
    """Evaluation sets under ``root``: ``root/<combo>/{input,target}`` for each combo present
    (in :data:`COMBOS` order), then any other paired sub-folder (sorted by name, e.g.
    ``root/Rain100H``); or, if there are none, ``root`` itself as one set named after it."""
    root = Path(root)
    if not root.is_dir():
        raise InterIRError(f"{root}: no such folder")
    sets: dict[str, PairedFolderDataset] = {}
    for combo in COMBOS:
        if _find_pair_dirs(root / combo) is not None:
            sets[combo] = PairedFolderDataset(root / combo)
    for sub in sorted(d for d in root.iterdir() if d.is_dir()):
        if sub.name not in sets and sub.name not in COMBOS and _find_pair_dirs(sub) is not None:
            sets[sub.name] = PairedFolderDataset(sub)
    if not sets and _find_pair_dirs(root) is not None:
        sets[root.resolve().name] = PairedFolderDataset(root)
    if not sets:
        raise InterIRError(f"{root}: no evaluation data found; expected <combo>/input + "
                           f"<combo>/target (combos: {', '.join(COMBOS)}) or input/ + target/")
    return sets
