import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import interir
from interir.cli import main
from interir.imageio import load_image


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    interir.save_pretrained(interir.build_model("tiny", n_blocks=1, channels=8), d)
    return str(d)


def rgb(h=20, w=28):
    rng = np.random.default_rng(0)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def write_variant(path, kind):
    a = rgb()
    if kind == "png":
        Image.fromarray(a).save(path)
    elif kind == "jpeg":
        Image.fromarray(a).save(path, quality=90)
    elif kind == "tiff":
        Image.fromarray(a).save(path)
    elif kind == "webp":
        Image.fromarray(a).save(path)
    elif kind == "bmp":
        Image.fromarray(a).save(path)
    elif kind == "gray":
        Image.fromarray(a[..., 0]).save(path)
    elif kind == "rgba":
        Image.fromarray(np.dstack([a, np.full(a.shape[:2], 128, np.uint8)])).save(path)
    elif kind == "gray16":
        Image.fromarray((a[..., 0].astype(np.uint16) * 257)).save(path)
    elif kind == "rgb16_tiff":
        import tifffile
        tifffile.imwrite(path, a.astype(np.uint16) * 257)
    elif kind == "palette":
        Image.fromarray(a).convert("P", palette=Image.ADAPTIVE).save(path)
    elif kind == "cmyk":
        Image.fromarray(a).convert("CMYK").save(path)
    elif kind == "float_tiff":
        Image.fromarray(a[..., 0].astype(np.float32) / 255).save(path)


VARIANTS = {"png": "a.png", "jpeg": "a.jpg", "tiff": "a.tif", "webp": "a.webp", "bmp": "a.bmp",
            "gray": "g.png", "rgba": "r.png", "gray16": "g16.png", "rgb16_tiff": "c16.tif",
            "palette": "p.png", "cmyk": "c.jpg", "float_tiff": "f.tif"}


@pytest.mark.parametrize("kind", sorted(VARIANTS))
def test_restore_accepts_every_kind_of_image(tmp_path, weights, kind):
    src = tmp_path / VARIANTS[kind]
    write_variant(src, kind)
    out = tmp_path / "out.png"
    assert main(["restore", str(src), str(out), "--weights", weights]) == 0
    res = np.asarray(Image.open(out))
    assert res.shape == (20, 28, 3)


def test_loaded_values_are_right(tmp_path):
    a = rgb()
    Image.fromarray(a[..., 0].astype(np.uint16) * 257).save(tmp_path / "g16.png")
    g = load_image(tmp_path / "g16.png")
    assert np.allclose(g[..., 0], a[..., 0] / 255, atol=1e-4) and np.array_equal(g[..., 0], g[..., 2])
    Image.fromarray(np.dstack([a, np.zeros(a.shape[:2], np.uint8)])).save(tmp_path / "t.png")
    assert np.allclose(load_image(tmp_path / "t.png"), 1.0)      # fully transparent -> white


def test_exif_rotation_restores_displayed_orientation(tmp_path, weights):
    a = rgb(20, 28)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6                      # rotate 90° CW on display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    loaded = load_image(tmp_path / "rot.jpg")
    assert loaded.shape == (28, 20, 3)
    out = tmp_path / "out.png"
    assert main(["restore", str(tmp_path / "rot.jpg"), str(out), "--weights", weights]) == 0
    assert np.asarray(Image.open(out)).shape == (28, 20, 3)


@pytest.mark.parametrize("content,msg", [(b"", "empty"), (b"this is not an image", "not a recognised image"),
                                         (None, "corrupt")])
def test_bad_files_one_line_error(tmp_path, weights, capsys, content, msg):
    src = tmp_path / "bad.png"
    if content is None:
        Image.fromarray(rgb()).save(src)
        src.write_bytes(src.read_bytes()[:200])            # truncated PNG
    else:
        src.write_bytes(content)
    assert main(["restore", str(src), str(tmp_path / "o.png"), "--weights", weights]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_input_and_bad_output(tmp_path, weights, capsys):
    Image.fromarray(rgb()).save(tmp_path / "a.png")
    assert main(["restore", str(tmp_path / "nope.png"), str(tmp_path / "o.png"), "--weights", weights]) == 2
    assert main(["restore", str(tmp_path / "a.png"), str(tmp_path / "o.xyz"), "--weights", weights]) == 2
    assert main(["restore", str(tmp_path / "a.png"), str(tmp_path / "no" / "o.png"), "--weights", weights]) == 2
    assert main(["restore", str(tmp_path / "a.png"), str(tmp_path / "o.png"), "--weights", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "output must end with" in err and "does not exist" in err
    assert "config.json: missing" in err


def test_size_limit(tmp_path, weights, capsys, monkeypatch):
    Image.fromarray(rgb(40, 50)).save(tmp_path / "a.png")
    assert main(["restore", str(tmp_path / "a.png"), str(tmp_path / "o.png"), "--weights", weights,
                 "--max-pixels", "1000"]) == 2
    assert "above the limit" in capsys.readouterr().err
    monkeypatch.setenv("INTERIR_MAX_PIXELS", "1000")
    assert main(["restore", str(tmp_path / "a.png"), str(tmp_path / "o.png"), "--weights", weights]) == 2
    assert "above the limit" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_no_weights_without_checkpoint(tmp_path, monkeypatch, capsys):
    import interir.commands._common as common
    monkeypatch.setattr(common, "default_checkpoint", lambda: None)
    Image.fromarray(rgb()).save(tmp_path / "a.png")
    assert main(["restore", str(tmp_path / "a.png"), str(tmp_path / "o.png")]) == 2
    assert "pass --weights" in capsys.readouterr().err


def test_trace_bundle(tmp_path, weights):
    import json
    Image.fromarray(rgb()).save(tmp_path / "a.png")
    out = tmp_path / "t.npz"
    assert main(["trace", str(tmp_path / "a.png"), "--out", str(out), "--weights", weights]) == 0
    data = np.load(out)
    assert data["output"].shape == (1, 3, 20, 28)
    summary = json.loads((tmp_path / "t.json").read_text())
    assert summary["n_iterations"] == 2
    assert main(["trace", str(tmp_path / "a.png"), "--out", str(tmp_path / "t.txt"), "--weights", weights]) == 2


def test_restore_output_matches_model(tmp_path, weights):
    Image.fromarray(rgb()).save(tmp_path / "a.png")
    main(["restore", str(tmp_path / "a.png"), str(tmp_path / "o.png"), "--weights", weights])
    m = interir.load_pretrained(weights)
    x = torch.from_numpy(load_image(tmp_path / "a.png").transpose(2, 0, 1))[None]
    with torch.no_grad():
        y = m(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(Image.open(tmp_path / "o.png")) / 255.0 - y).max() <= 1 / 255 + 1e-6


def test_console_script_no_traceback(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"junk")
    r = subprocess.run([sys.executable, "-m", "interir.cli", "restore", str(tmp_path / "bad.png"),
                        str(tmp_path / "o.png")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "interir.cli", "restore"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
