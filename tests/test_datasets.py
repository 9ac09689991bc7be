"""Image-folder datasets (interir.data.datasets)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from interir.data.datasets import (CleanImageDataset, PairedFolderDataset, discover_eval_sets,
                                   list_images)
from interir.data.degrade import COMBOS
from interir.errors import InterIRError


def _write(path, h=20, w=24, seed=0, value=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if value is not None:
        arr = np.full((h, w, 3), value, np.uint8)
    else:
        arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def _coded(h, w):
    """An image whose pixels identify their position: R = row, G = column, B = 7."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.arange(h)[:, None]
    arr[..., 1] = np.arange(w)[None, :]
    arr[..., 2] = 7
    return arr


def _broken(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an image at all")


# --------------------------------------------------------------------------- list_images
def test_list_images_sorted_filtered_non_recursive(tmp_path):
    for n in ("b.PNG", "a.jpg", "c.tiff", "d.webp", "e.bmp", "f.jpeg", "g.tif"):
        _write(tmp_path / n, 4, 4)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    _write(tmp_path / "sub" / "z.png")
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.jpg", "b.PNG", "c.tiff", "d.webp", "e.bmp", "f.jpeg", "g.tif"]
    with pytest.raises(InterIRError, match="nowhere"):
        list_images(tmp_path / "nowhere")
    with pytest.raises(InterIRError):
        list_images(tmp_path / "a.jpg")


# --------------------------------------------------------------------------- CleanImageDataset
def test_clean_dataset_items_shape_range(tmp_path):
    for i in range(3):
        _write(tmp_path / f"{i}.png", 30 + i, 40, seed=i)
    ds = CleanImageDataset(tmp_path, patch_size=16)
    assert len(ds) == 3
    x = ds[1]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert all(img.dtype == torch.uint8 for img in ds.images)  # kept compact in memory


def test_centre_crop_without_augment(tmp_path):
    arr = _coded(30, 40)
    Image.fromarray(arr).save(tmp_path / "a.png")
    ds = CleanImageDataset(tmp_path, patch_size=10, augment=False)
    x = (ds[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(x, arr[10:20, 15:25])
    assert torch.equal(ds[0], ds[0])


def test_augmented_patch_is_a_flipped_crop(tmp_path):
    arr = _coded(30, 40)
    Image.fromarray(arr).save(tmp_path / "a.png")
    ds = CleanImageDataset(tmp_path, patch_size=8, augment=True)
    torch.manual_seed(0)
    seen_flip = False
    for _ in range(20):
        p = (ds[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy().astype(int)
        rows, cols = p[..., 0], p[..., 1]
        # rows constant along a row and consecutive (possibly reversed), same for columns
        assert (np.abs(np.diff(rows[:, 0])) == 1).all() and (rows == rows[:, :1]).all()
        assert (np.abs(np.diff(cols[0])) == 1).all() and (cols == cols[:1]).all()
        seen_flip |= bool(rows[1, 0] < rows[0, 0]) or bool(cols[0, 1] < cols[0, 0])
    assert seen_flip


@pytest.mark.parametrize("h,w", [(5, 7), (1, 1), (1, 9), (40, 3)])
def test_small_images_are_padded(tmp_path, h, w):
    arr = _write(tmp_path / "small.png", h, w)
    ds = CleanImageDataset(tmp_path, patch_size=16, augment=False)
    x = ds[0]
    assert x.shape == (3, 16, 16)
    img = ds.images[0]
    assert img.shape[1] >= 16 and img.shape[2] >= 16
    # the original pixels sit in the middle of the padded image, untouched
    top, left = max(0, 16 - h) // 2, max(0, 16 - w) // 2
    assert np.array_equal(img.permute(1, 2, 0).numpy()[top:top + h, left:left + w], arr)
    b = ds.sample_batch(3, torch.Generator().manual_seed(0))
    assert b.shape == (3, 3, 16, 16)


def test_padding_is_reflect_not_black(tmp_path):
    _write(tmp_path / "white.png", 4, 4, value=250)
    ds = CleanImageDataset(tmp_path, patch_size=32)
    assert float(ds.images[0].float().min()) == 250.0


def test_unreadable_image_skipped_with_warning(tmp_path):
    _write(tmp_path / "good.png")
    _broken(tmp_path / "bad.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.warns(UserWarning) as record:
        ds = CleanImageDataset(tmp_path, patch_size=8)
    msgs = " ".join(str(r.message) for r in record)
    assert "bad.jpg" in msgs and "empty.png" in msgs
    assert len(ds) == 1 and [p.name for p in ds.paths] == ["good.png"]


def test_no_readable_images_is_an_error(tmp_path):
    _broken(tmp_path / "bad.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InterIRError, match=str(tmp_path.name)):
            CleanImageDataset(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InterIRError, match="no readable images"):
        CleanImageDataset(empty)


def test_files_and_exclude(tmp_path):
    for n in ("a", "b", "c", "d"):
        _write(tmp_path / f"{n}.png")
    assert [p.name for p in CleanImageDataset(tmp_path, 8, files=["b.png", "d"]).paths] == \
        ["b.png", "d.png"]
    assert [p.name for p in CleanImageDataset(tmp_path, 8, exclude=["a.png", "c"]).paths] == \
        ["b.png", "d.png"]
    assert [p.name for p in CleanImageDataset(tmp_path, 8, files=["a.png", "b.png"],
                                              exclude=["a.png"]).paths] == ["b.png"]
    with pytest.raises(InterIRError, match="zzz.png"):
        CleanImageDataset(tmp_path, 8, files=["a.png", "zzz.png"])
    with pytest.raises(InterIRError):
        CleanImageDataset(tmp_path, 8, exclude=["a", "b", "c", "d"])


def test_list_of_paths_as_root(tmp_path):
    paths = [tmp_path / "x.png", tmp_path / "y.png"]
    for p in paths:
        _write(p)
    ds = CleanImageDataset(paths[::-1], patch_size=8)
    assert ds.paths == paths[::-1]


def test_sample_batch_is_a_pure_function_of_the_generator(tmp_path):
    for i in range(5):
        _write(tmp_path / f"{i}.png", 24 + i, 30, seed=i)
    ds = CleanImageDataset(tmp_path, patch_size=12)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    a = ds.sample_batch(6, g)
    torch.manual_seed(999)  # the global RNG must not matter
    b = ds.sample_batch(6, torch.Generator().manual_seed(3))
    g.set_state(state)
    c = ds.sample_batch(6, g)
    d = ds.sample_batch(6, torch.Generator().manual_seed(4))
    assert a.shape == (6, 3, 12, 12)
    assert torch.equal(a, b) and torch.equal(a, c) and not torch.equal(a, d)
    # a second batch from the same generator continues the stream (differs)
    g.set_state(state)
    ds.sample_batch(6, g)
    assert not torch.equal(ds.sample_batch(6, g), a)


def test_sample_batch_without_augment_does_not_flip(tmp_path):
    Image.fromarray(_coded(20, 20)).save(tmp_path / "a.png")
    ds = CleanImageDataset(tmp_path, patch_size=8, augment=False)
    b = (ds.sample_batch(16, torch.Generator().manual_seed(0)) * 255).round().to(torch.int64)
    assert (b[:, 0, 1:, 0] - b[:, 0, :-1, 0] == 1).all()  # rows increase downwards
    assert (b[:, 1, 0, 1:] - b[:, 1, 0, :-1] == 1).all()  # columns increase rightwards
    assert len({int(v) for v in b[:, 0, 0, 0]}) > 1  # crops are still random


# --------------------------------------------------------------------------- PairedFolderDataset
def test_paired_exact_stems_with_different_extensions(tmp_path):
    a = _write(tmp_path / "input" / "001.png", seed=1)
    t = _write(tmp_path / "target" / "001.bmp", seed=2)
    _write(tmp_path / "input" / "002.png", seed=3)
    _write(tmp_path / "target" / "002.png", seed=4)
    ds = PairedFolderDataset(tmp_path)
    assert len(ds) == 2 and ds.names == ["001.png", "002.png"]
    x, y, name = ds[0]
    assert name == "001.png" and x.shape == y.shape == (3, 20, 24)
    assert np.array_equal((x * 255).round().byte().permute(1, 2, 0).numpy(), a)
    assert np.array_equal((y * 255).round().byte().permute(1, 2, 0).numpy(), t)


def test_paired_reside_prefix_matching(tmp_path):
    _write(tmp_path / "hazy" / "0001_0.8_0.2.png", seed=1)
    _write(tmp_path / "hazy" / "0001_0.9_0.1.png", seed=2)
    _write(tmp_path / "hazy" / "0002_0.8_0.2.jpg", seed=3)
    _write(tmp_path / "GT" / "0001.png", seed=4)
    _write(tmp_path / "GT" / "0002.png", seed=5)
    ds = PairedFolderDataset(tmp_path)
    assert [(i.name, t.name) for i, t in ds.pairs] == [
        ("0001_0.8_0.2.png", "0001.png"), ("0001_0.9_0.1.png", "0001.png"),
        ("0002_0.8_0.2.jpg", "0002.png")]


def test_paired_exact_stem_wins_over_prefix(tmp_path):
    _write(tmp_path / "input" / "a_1.png")
    _write(tmp_path / "target" / "a.png", seed=1)
    _write(tmp_path / "target" / "a_1.png", seed=2)
    assert PairedFolderDataset(tmp_path).pairs[0][1].name == "a_1.png"


@pytest.mark.parametrize("inp,tgt", [("rain", "norain"), ("hazy", "clear"), ("hazy", "GT"),
                                     ("Input", "Target"), ("rainy", "norain")])
def test_paired_folder_names(tmp_path, inp, tgt):
    _write(tmp_path / inp / "x.png")
    _write(tmp_path / tgt / "x.png")
    assert len(PairedFolderDataset(tmp_path)) == 1


def test_paired_skips_with_warnings(tmp_path):
    _write(tmp_path / "input" / "ok.png")
    _write(tmp_path / "target" / "ok.png")
    _write(tmp_path / "input" / "lonely.png")            # no target
    _broken(tmp_path / "input" / "corrupt.png")          # unreadable input
    _write(tmp_path / "target" / "corrupt.png")
    _write(tmp_path / "input" / "size.png", 10, 10)      # size mismatch
    _write(tmp_path / "target" / "size.png", 12, 10)
    with pytest.warns(UserWarning) as record:
        ds = PairedFolderDataset(tmp_path)
    msgs = " ".join(str(r.message) for r in record)
    for name in ("lonely.png", "corrupt.png", "size.png"):
        assert name in msgs
    assert ds.names == ["ok.png"]


def test_paired_errors(tmp_path):
    with pytest.raises(InterIRError, match="input/ \\+ target/"):
        PairedFolderDataset(tmp_path)
    _write(tmp_path / "input" / "a.png")
    (tmp_path / "target").mkdir()
    with pytest.warns(UserWarning, match="a.png"):
        with pytest.raises(InterIRError, match="no readable input/target pairs"):
            PairedFolderDataset(tmp_path)


def test_paired_corrupt_beyond_header_raises_clear_error(tmp_path):
    _write(tmp_path / "input" / "t.png", 16, 16)
    _write(tmp_path / "target" / "t.png", 16, 16)
    data = (tmp_path / "input" / "t.png").read_bytes()
    (tmp_path / "input" / "t.png").write_bytes(data[: len(data) // 2])  # truncated
    ds = PairedFolderDataset(tmp_path)
    with pytest.raises(InterIRError, match="t.png"):
        ds[0]


# --------------------------------------------------------------------------- discover_eval_sets
def test_discover_combo_layout_in_combo_order(tmp_path):
    for combo in ("rain", "haze_rain_noise", "noise"):
        _write(tmp_path / combo / "input" / "a.png")
        _write(tmp_path / combo / "target" / "a.png")
    _write(tmp_path / "Rain100H" / "rain" / "r1.png")
    _write(tmp_path / "Rain100H" / "norain" / "r1.png")
    (tmp_path / "logs").mkdir()
    sets = discover_eval_sets(tmp_path)
    assert list(sets) == ["haze_rain_noise", "rain", "noise", "Rain100H"]
    assert [COMBOS.index(c) for c in list(sets)[:3]] == sorted(COMBOS.index(c)
                                                               for c in list(sets)[:3])
    assert all(isinstance(d, PairedFolderDataset) for d in sets.values())


def test_discover_plain_layout_named_after_root(tmp_path):
    root = tmp_path / "mytest"
    _write(root / "input" / "a.png")
    _write(root / "target" / "a.png")
    sets = discover_eval_sets(root)
    assert list(sets) == ["mytest"] and len(sets["mytest"]) == 1


def test_discover_nothing_is_an_error(tmp_path):
    (tmp_path / "haze").mkdir()
    with pytest.raises(InterIRError, match="no evaluation data"):
        discover_eval_sets(tmp_path)
    with pytest.raises(InterIRError, match="no such folder"):
        discover_eval_sets(tmp_path / "missing")
