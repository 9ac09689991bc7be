"""The explorer through gradio_client against a launched app (a subprocess with a tiny model),
every named endpoint, bad input, odd image formats, 8 simultaneous users; plus in-process checks
of the handlers (no hook left behind, standard-convolution models)."""
from __future__ import annotations

import concurrent.futures as cf
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import interir
from interir.data.degrade import degrade_image
from interir.imageio import load_image, save_image, to_uint8

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

torch.set_num_threads(1)
ENDPOINTS = {"/restore", "/degrade", "/step", "/matrices", "/masks", "/embedding", "/intervene", "/export",
             "/panels", "/play", "/play_tick", "/twin", "/why", "/why_select"}


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random colour image (float32, HWC) — cheap to make, not noise."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, max(2, h // 8), max(2, w // 8), generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear",
                                           align_corners=False)[0].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from app.testing import serve

    root = tmp_path_factory.mktemp("app")
    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=2, channels=8).eval()
    interir.save_pretrained(model, root / "weights")
    model = interir.load_pretrained(root / "weights")
    # found beside the weights as <name>-stdconv, as checkpoints/interir-tiny-stdconv is
    interir.save_pretrained(interir.build_model("tiny", n_blocks=2, channels=8, conv_type="standard"),
                            root / "weights-stdconv")
    twin = interir.load_pretrained(root / "weights-stdconv")
    with serve(root / "weights", root / "server") as server:
        yield {"root": root, "url": server.url, "model": model, "twin": twin, "server": server}


@pytest.fixture()
def client(env):
    return Client(env["url"], verbose=False)


def expected(model, img: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        y = model(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None])
    return to_uint8(y[0].permute(1, 2, 0).numpy())


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def close(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to one 8-bit step (thread-count dependent float rounding)."""
    assert a.shape == b.shape
    d = np.abs(a.astype(int) - b.astype(int))
    assert d.max() <= 1 and d.mean() < 0.01


def val(x):
    """The value of a component output (gradio_client returns gr.update(...) as a dict)."""
    return x["value"] if isinstance(x, dict) and x.get("__type__") == "update" else x


def plot_of(value) -> dict:
    return json.loads(value["plot"])


def decode(arr):
    from viz.plots import from_typed_array

    return from_typed_array(arr)


def viewer_lines(view: str) -> list[str]:
    """The iteration viewer's step lines, k = 0..n, as text."""
    return [re.sub(r"<[^>]+>", "", p) for p in re.findall(r'<p data-k="\d+"[^>]*>(.*?)</p>', view)]


def check_viewer(view: str, tr) -> None:
    """/panels' iteration viewer holds every k: the decoded image (JPEG), the change map (a
    lossless PNG: equal up to the server's float rounding) and the step line; only the last k is
    shown."""
    import base64
    import io

    from viz.compact import compact_trace
    from viz.images import change_frame
    from viz.viewer import FRAME_QUALITY

    ct = compact_trace(tr)
    n = ct.n_iter - 1
    frames = re.findall(r'<img data-k="(\d+)" src="data:image/jpeg;base64,([^"]+)"[^>]*>', view)
    changes = re.findall(r'<img data-k="(\d+)" src="data:image/png;base64,([^"]+)"[^>]*>', view)
    assert [int(k) for k, _ in frames] == [int(k) for k, _ in changes] == list(range(n + 1))
    for k in range(n + 1):
        got = read(io.BytesIO(base64.b64decode(frames[k][1])))
        want = to_uint8(tr.iterations[k].image[0].permute(1, 2, 0).numpy())
        buf = io.BytesIO()  # the error JPEG itself makes at that quality
        Image.fromarray(want).save(buf, format="JPEG", quality=FRAME_QUALITY, subsampling=0)
        jpeg_err = np.abs(read(buf).astype(int) - want).mean()
        assert got.shape == want.shape and np.abs(got.astype(int) - want).mean() <= jpeg_err + 0.5
        got = read(io.BytesIO(base64.b64decode(changes[k][1])))
        assert np.abs(got.astype(int) - change_frame(ct, k)[0]).mean() < 1
    assert len(re.findall(r"<img [^>]*hidden", view)) == 2 * n  # all but k = n's image and change map
    lines = viewer_lines(view)
    assert len(lines) == n + 1 and all(f"k = {k}" in line for k, line in enumerate(lines))
    assert "(the output)" in lines[n] and "compared with the input" in lines[0]


# ----------------------------------------------------------------------------- endpoints
def test_every_endpoint_is_named(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert ENDPOINTS <= set(api)
    ref = [p for p in api["/restore"]["parameters"] if p["parameter_name"] == "reference_path"][0]
    assert ref["parameter_has_default"] and ref["parameter_default"] is None  # the reference is optional


def test_twin_and_the_server_log(env, client, tmp_path):
    img = smooth_image(40, 48, 11)
    save_image(img, tmp_path / "t.png")
    img = load_image(tmp_path / "t.png")
    client.predict(handle_file(str(tmp_path / "t.png")), api_name="/restore")  # no reference given
    gallery, md = client.predict(api_name="/twin")
    assert len(gallery) == 3 and "standard-conv twin" in md and "No clean reference" in md
    close(read(gallery[0]["image"]), expected(env["model"], img))
    close(read(gallery[1]["image"]), expected(env["twin"], img))
    with pytest.raises(AppError, match="channel 99 out of range"):
        client.predict(0, "99", api_name="/matrices")
    log = env["server"].log.read_text()
    assert re.search(r"request /restore image=48x40 \d+ ms ok", log)
    assert re.search(r"request /twin image=48x40 \d+ ms ok", log)
    assert re.search(r"request /matrices image=48x40 \d+ ms refused: channel 99 out of range", log)


def test_twin_panel_without_a_trained_twin(tmp_path):
    """Weights with no <name>-stdconv sibling (as a new default has before its twin is retrained):
    /twin says so plainly, before and after a restore, with no error in the page or the log."""
    from app.runtime import shipped_pairs
    from app.testing import serve

    torch.manual_seed(1)
    interir.save_pretrained(interir.build_model("tiny", n_blocks=3, channels=8), tmp_path / "deep-model")
    save_image(smooth_image(32, 40, 13), tmp_path / "x.png")
    with serve(tmp_path / "deep-model", tmp_path / "server",
               env={"INTERIR_TWIN_WEIGHTS": ""}) as server:
        client = Client(server.url, verbose=False)
        for restored in (False, True):
            if restored:
                client.predict(handle_file(str(tmp_path / "x.png")), api_name="/restore")
            gallery, md = client.predict(api_name="/twin")
            assert not gallery
            assert "No standard-conv twin has been trained for `deep-model` yet" in md
            assert "INTERIR_TWIN_WEIGHTS" in md and "deep-model-stdconv" in md
            # and it points to a shipped pair that has a twin (the default's, now that it has one)
            assert f"`INTERIR_WEIGHTS=checkpoints/{shipped_pairs()[0]}` to compare that pair" in md
            assert all(f"`{p}`" in md for p in shipped_pairs())
        log = server.log.read_text()
    assert len(re.findall(r"request /twin image=\S+ \d+ ms ok", log)) == 2
    assert "Traceback" not in log and "refused" not in log and "failed" not in log


def test_twin_of_another_depth_is_not_paired(tmp_path, monkeypatch):
    from app.runtime import ModelHolder, load_twin

    monkeypatch.delenv("INTERIR_TWIN_WEIGHTS", raising=False)
    for name, n in (("m", 3), ("m-stdconv", 2)):
        interir.save_pretrained(interir.build_model("tiny", n_blocks=n, channels=4, conv_type=(
            "standard" if name.endswith("stdconv") else "explain")), tmp_path / name)
    holder = ModelHolder(interir.load_pretrained(tmp_path / "m"), "test", tmp_path / "m")
    twin, note = load_twin(holder)
    assert twin is None and "has n = 2, not n = 3" in note and "INTERIR_TWIN_WEIGHTS" in note
    twin, note = load_twin(holder, tmp_path / "m-stdconv")  # named explicitly: paired as asked
    assert twin is not None and note == ""
    interir.save_pretrained(interir.build_model("tiny", n_blocks=3, channels=4, conv_type="standard"),
                            tmp_path / "m-stdconv")
    twin, note = load_twin(holder)
    assert twin is not None and twin.short_name == "m-stdconv"


def test_twin_not_in_step_is_said(tmp_path, monkeypatch):
    """Twins trained to different iterations (config.json train.iter): the pairing note says the
    comparison mixes in the other iterations' training; in step (or unknown), no note."""
    from app.runtime import ModelHolder, load_twin

    monkeypatch.delenv("INTERIR_TWIN_WEIGHTS", raising=False)
    for iters in ((12000, 4000), (4000, 4000), (None, 4000)):
        for name, it in zip(("m", "m-stdconv"), iters):
            interir.save_pretrained(interir.build_model("tiny", n_blocks=2, channels=4, conv_type=(
                "standard" if name.endswith("stdconv") else "explain")), tmp_path / name,
                extra={"train": {"name": "run", "iter": it}} if it else None)
        holder = ModelHolder(interir.load_pretrained(tmp_path / "m"), "test", tmp_path / "m")
        twin, note = load_twin(holder)
        assert twin is not None
        if iters == (12000, 4000):
            assert note.startswith("**Not in step:** `m` is from iteration 12,000") and "`m-stdconv` from iteration 4,000" in note
            assert "with 8,000 iterations of training" in note
        else:
            assert note == ""


def test_twins_from_different_stages_are_not_in_step(tmp_path, monkeypatch):
    """Same iteration of different training stages (the run names differ beyond the twin's
    -stdconv mark): not in step; the same stage and iteration: in step."""
    from app.runtime import ModelHolder, load_twin

    monkeypatch.delenv("INTERIR_TWIN_WEIGHTS", raising=False)
    for names, expect in ((("n6-long3", "n6-stdconv-long2"), "another stage"), (("n6-long3", "n6-stdconv-long3"), "")):
        for folder, run in zip(("m", "m-stdconv"), names):
            interir.save_pretrained(interir.build_model("tiny", n_blocks=2, channels=4, conv_type=(
                "standard" if folder.endswith("stdconv") else "explain")), tmp_path / folder,
                extra={"train": {"name": run, "iter": 4000}})
        holder = ModelHolder(interir.load_pretrained(tmp_path / "m"), "test", tmp_path / "m")
        twin, note = load_twin(holder)
        assert twin is not None
        if expect:
            assert note.startswith("**Not in step:** `m` is from iteration 4,000 of its training stage `n6-long3`")
            assert "`m-stdconv` from iteration 4,000 of `n6-stdconv-long2`, another stage" in note
        else:
            assert note == ""


def test_weights_started_from_the_twin_say_so(tmp_path, monkeypatch):
    """A lineage.json whose first stage is the twin's folder: the pairing note says the model began
    from the twin's weights (in step or not); a lineage from elsewhere or an unreadable one: no such note."""
    import json

    from app.runtime import ModelHolder, load_twin

    monkeypatch.delenv("INTERIR_TWIN_WEIGHTS", raising=False)
    for folder, it in (("m", 2000), ("m-stdconv", 2000)):
        interir.save_pretrained(interir.build_model("tiny", n_blocks=2, channels=4, conv_type=(
            "standard" if folder.endswith("stdconv") else "explain_unit")), tmp_path / folder,
            extra={"train": {"name": folder.replace("m", "n6", 1) + "-xfer", "iter": it}})
    holder = ModelHolder(interir.load_pretrained(tmp_path / "m"), "test", tmp_path / "m")
    for first, expect in (({"checkpoint": "checkpoints/m-stdconv"}, True), ({"checkpoint": "checkpoints/tiny"}, False),
                          ("not a stage", False)):
        (tmp_path / "m" / "lineage.json").write_text(json.dumps({"stages": [first, {"run": "n6-xfer"}]}))
        twin, note = load_twin(holder)
        assert twin is not None
        assert note.startswith("**One start:** `m` began from the twin's weights") == expect, note
    (tmp_path / "m" / "lineage.json").write_text("{broken")
    assert load_twin(holder)[1] == ""


def test_why_this_pixel(env, client, tmp_path):
    pytest.importorskip("interir.attribution")
    img = smooth_image(40, 48, 12)
    save_image(img, tmp_path / "w.png")
    img = load_image(tmp_path / "w.png")
    client.predict(handle_file(str(tmp_path / "w.png")), api_name="/restore")
    attr, change, chans, md = client.predict(20, 10, None, None, api_name="/why")
    assert "Region:" in md and "Integrated gradients" in md
    assert "heatmap" in json.dumps(plot_of(attr)["data"]) and plot_of(chans)["data"]
    tr = interir.trace(env["model"], torch.from_numpy(img).permute(2, 0, 1)[None])
    from interir.attribution import Region, iteration_change

    want = iteration_change(to_uint8(img), [to_uint8(it.image[0].permute(1, 2, 0).numpy()) for it in tr.iterations],
                            Region.point(20, 10, radius=8))
    k_max = int(np.argmax(want.region))
    assert f"Iteration k = {k_max} changed the region most" in md
    *_, md = client.predict(5, 5, 30, 20, api_name="/why")
    assert "Region:" in md
    with pytest.raises(AppError) as err:
        client.predict(500, 500, None, None, api_name="/why")
    assert "Traceback" not in str(err.value)


def test_restore_then_every_panel(env, client, tmp_path):
    model = env["model"]
    img = smooth_image(44, 60, 1)
    save_image(img, tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    slider, download, info = client.predict(handle_file(str(tmp_path / "a.png")), None, api_name="/restore")
    before, after = val(slider)
    close(read(after), expected(model, img))
    np.testing.assert_array_equal(read(before), to_uint8(img))
    assert read(download).shape == (44, 60, 3) and "Restored" in info and "No clean reference" in info
    assert (f"Mean brightness (0–255): input {to_uint8(img).mean():.1f} → output "
            f"{expected(model, img).mean():.1f}.") in info

    tr = interir.trace(model, torch.from_numpy(img).permute(2, 0, 1)[None])
    n = len(tr.iterations) - 1
    for k in range(n + 1):
        im_k, diff_k, md = client.predict(k, api_name="/step")
        close(read(im_k), to_uint8(tr.iterations[k].image[0].permute(1, 2, 0).numpy()))
        assert read(diff_k).shape == (44, 60, 3) and f"k = {k}" in md
    k_sl, view, curves, notes, info = client.predict(api_name="/panels")  # the shown panel
    assert val(k_sl) == n and "Data fidelity" in notes
    check_viewer(view, tr)
    line = [t for t in plot_of(curves)["data"] if t.get("name") == "fidelity"][0]
    assert line["y"] == pytest.approx([it.fidelity for it in tr.iterations], rel=1e-4)
    sel = [t for t in plot_of(curves)["data"] if t.get("name") == "sel:fidelity"][0]
    assert sel["x"] == [n] and sel["y"][0] == pytest.approx(tr.iterations[n].fidelity, rel=1e-4)
    more = client.predict(api_name="/panels_more")
    assert len(more) >= 20  # every other panel, filled by name

    fig, grid, pca, md = client.predict(1, "3", api_name="/matrices")
    heat = [t for t in plot_of(fig)["data"] if t["type"] == "heatmap"]
    np.testing.assert_allclose(decode(heat[0]["z"]), tr.iterations[1].A[0, 3].numpy(), rtol=2e-3, atol=2e-3)
    assert read(grid).std() > 1 and read(pca).std() > 1 and "k = 1" in md
    fig, *_ = client.predict(0, "mean", api_name="/matrices")
    heat = [t for t in plot_of(fig)["data"] if t["type"] == "heatmap"]
    np.testing.assert_allclose(decode(heat[1]["z"]), tr.iterations[0].B[0].mean(0).numpy(), rtol=2e-3, atol=2e-3)

    layer = list(tr.masks)[3]
    out = client.predict(None, layer, "2", 0.5, api_name="/masks")
    group, lay, chan, overlay, att, rank, md = (val(o) for o in out)
    assert lay == layer and chan == "2" and group == layer.split(".")[0] + "." + layer.split(".")[1]
    rate = tr.masks[layer][0, 2].float().mean().item()
    assert f"{rate:.1%}" in md
    oh, ow, _ = read(overlay).shape  # shown enlarged by an integer factor
    assert oh % 44 == 0 and ow % 60 == 0 and oh // 44 == ow // 60 >= 1
    z = decode([t for t in plot_of(att)["data"] if t["type"] == "heatmap"][0]["z"])
    assert np.nanmax(z) == pytest.approx(tr.attention[layer][0].max().item(), rel=1e-4)
    assert val(client.predict("final_resm", layer, "mean", 0.3, api_name="/masks")[1]).startswith("final_resm.")

    fig, md, gallery = client.predict(5, api_name="/embedding")
    from interir.reference import load_reference, place

    ref = load_reference(env["root"] / "server" / "reference.npz")
    p = place(ref, tr.embedding.numpy(), k=5)
    from viz.plots import combo_label

    assert f"Diagnosis: {combo_label(p.combo)}" in md and len(gallery) == 5
    star = [t for t in plot_of(fig)["data"] if t.get("name") == "your image"][0]
    assert star["x"][0] == pytest.approx(p.xy[0], abs=1e-3)

    gallery, table = client.predict(1, api_name="/intervene")
    assert len(gallery) == 4 and "Λ = 0" in table
    close(read(gallery[1]["image"]), to_uint8(tr.iterations[1].image[0].permute(1, 2, 0).numpy()))
    from interir.interventions import zero_multiplier

    with zero_multiplier(model), torch.inference_mode():
        z0 = model(torch.from_numpy(img).permute(2, 0, 1)[None])
    close(read(gallery[3]["image"]), to_uint8(z0[0].permute(1, 2, 0).numpy()))

    files, md = client.predict(api_name="/export")
    names = sorted(Path(f).name for f in files)
    assert names == ["a_report.html", "a_summary.json", "a_trace.npz"]
    by = {Path(f).name: f for f in files}
    with np.load(by["a_trace.npz"]) as z:
        assert z["iterations.0.A"].shape == tuple(tr.iterations[0].A.shape)
        assert json.loads(str(z["summary_json"]))["n_iterations"] == n + 1
    assert json.loads(Path(by["a_summary.json"]).read_text())["image"]["width"] == 60
    html = Path(by["a_report.html"]).read_text()
    assert "Plotly.newPlot" in html and "Diagnosis" in html

    assert client.predict(api_name="/play") is not None
    k_next, *rest = client.predict(n, api_name="/play_tick")
    assert val(k_next) == 0


def test_degradation_lab_keeps_the_reference(env, client, tmp_path):
    clean = smooth_image(40, 56, 2)
    save_image(clean, tmp_path / "clean.png")
    clean = load_image(tmp_path / "clean.png")
    degraded, md = client.predict(handle_file(str(tmp_path / "clean.png")), 50, 100, 10, 7, api_name="/degrade")
    want = to_uint8(degrade_image(clean, 50, 100, 10, seed=7))
    np.testing.assert_array_equal(read(degraded), want)
    assert "H + R + N" in md
    _, _, info = client.predict(handle_file(degraded), None, api_name="/restore")
    assert "degradation lab" in info and "PSNR" in info and "SSIM" in info and "follows" not in info
    assert f"clean reference {to_uint8(clean).mean():.1f}" in info
    _, view, curves, notes, info = client.predict(api_name="/panels")
    assert "PSNR" in viewer_lines(view)[-1]
    titles = json.dumps(plot_of(curves)["layout"].get("annotations", []))
    assert "PSNR vs clean reference" in titles and "**PSNR**" in notes and "SSIM" in info


def test_uploaded_reference_and_shipped_example(env, client, tmp_path):
    img, ref = smooth_image(36, 36, 3), smooth_image(36, 36, 4)
    save_image(img, tmp_path / "i.png")
    save_image(ref, tmp_path / "r.png")
    _, _, info = client.predict(handle_file(str(tmp_path / "i.png")), handle_file(str(tmp_path / "r.png")),
                                api_name="/restore")
    assert "uploaded reference r.png" in info
    save_image(ref[:30], tmp_path / "r2.png")
    _, _, info = client.predict(handle_file(str(tmp_path / "i.png")), handle_file(str(tmp_path / "r2.png")),
                                api_name="/restore")
    assert "reference ignored" in info
    examples = json.loads((Path(__file__).resolve().parents[1] / "examples" / "examples.json").read_text())
    ex = Path(__file__).resolve().parents[1] / "examples" / examples[0]["file"]
    _, _, info = client.predict(handle_file(str(ex)), None, api_name="/restore")
    assert "shipped example" in info and "PSNR" in info


# ----------------------------------------------------------------------------- bad input
def test_bad_input_gives_one_line_errors_and_the_server_keeps_serving(env, tmp_path):
    c = Client(env["url"], verbose=False)
    with pytest.raises(AppError, match="Restore an image first"):
        c.predict(0, api_name="/step")
    (tmp_path / "junk.png").write_text("definitely not an image")
    good = tmp_path / "good.png"
    save_image(smooth_image(24, 24, 5), good)
    (tmp_path / "trunc.png").write_bytes(good.read_bytes()[:60])
    for bad, msg in [("junk.png", "not a recognised image"), ("trunc.png", "trunc.png")]:
        with pytest.raises(AppError, match=msg) as err:
            c.predict(handle_file(str(tmp_path / bad)), None, api_name="/restore")
        assert "Traceback" not in str(err.value) and "\n" not in str(err.value).strip()
    with pytest.raises(AppError, match="no image"):
        c.predict(None, None, api_name="/restore")
    with pytest.raises(AppError, match="150"):  # gradio's slider check or ours
        c.predict(handle_file(str(good)), 500, 0, 0, 0, api_name="/degrade")
    _, _, info = c.predict(handle_file(str(good)), None, api_name="/restore")
    assert "Restored" in info
    with pytest.raises(AppError, match="channel 99 out of range"):
        c.predict(0, "99", api_name="/matrices")
    with pytest.raises(AppError, match="unknown block"):
        c.predict("blocks.77", None, "mean", 0.5, api_name="/masks")


def _odd_formats(tmp_path: Path) -> dict[str, tuple[Path, tuple[int, int]]]:
    rng = np.random.default_rng(0)
    rgb = (smooth_image(30, 40, 6) * 255).astype(np.uint8)
    out = {}
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    out["gray"] = (tmp_path / "gray.png", (30, 40))
    Image.fromarray(np.dstack([rgb, rng.integers(0, 255, (30, 40), dtype=np.uint8)])).save(tmp_path / "rgba.png")
    out["rgba"] = (tmp_path / "rgba.png", (30, 40))
    Image.fromarray((rgb[..., 1].astype(np.uint16) * 257)).save(tmp_path / "g16.png")
    out["16-bit"] = (tmp_path / "g16.png", (30, 40))
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    out["cmyk"] = (tmp_path / "cmyk.jpg", (30, 40))
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    out["palette"] = (tmp_path / "pal.png", (30, 40))
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° when displayed
    im.save(tmp_path / "exif.jpg", exif=exif)
    out["exif"] = (tmp_path / "exif.jpg", (40, 30))
    big = (smooth_image(300, 1500, 7) * 255).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "wide.jpg", quality=90)
    out["wide"] = (tmp_path / "wide.jpg", (205, 1024))
    return out


def test_odd_image_formats_and_downscaling(env, client, tmp_path):
    for name, (path, shape) in _odd_formats(tmp_path).items():
        slider, _, info = client.predict(handle_file(str(path)), None, api_name="/restore")
        before, after = val(slider)
        assert read(after).shape[:2] == shape, name
        if name == "wide":
            assert "downscaled to 1024×205" in info
        else:
            assert "downscaled" not in info, name


# ----------------------------------------------------------------------------- load
def test_eight_simultaneous_users_get_their_own_results(env, tmp_path):
    model = env["model"]
    jobs = []
    for i in range(8):
        img = smooth_image(28 + 4 * i, 36, 100 + i)
        save_image(img, tmp_path / f"u{i}.png")
        jobs.append((tmp_path / f"u{i}.png", load_image(tmp_path / f"u{i}.png")))

    def user(job):
        path, img = job
        c = Client(env["url"], verbose=False)
        slider, _, _ = c.predict(handle_file(str(path)), None, api_name="/restore")
        after = val(slider)[1]
        im0, *_ = c.predict(0, api_name="/step")
        return read(after), read(im0)

    with cf.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(user, jobs))
    for (path, img), (after, im0) in zip(jobs, results):
        close(after, expected(model, img))
        assert im0.shape == img.shape


# ----------------------------------------------------------------------------- in-process
def test_handlers_leave_no_hooks_and_handle_standard_convs(tmp_path):
    from app.handlers import Explorer, Session
    from app.runtime import ModelHolder

    torch.manual_seed(0)
    for conv_type in ("explain", "standard"):
        model = interir.build_model("tiny", n_blocks=1, channels=4, conv_type=conv_type)
        ex = Explorer(ModelHolder(model, "test"), None, "not built in this test")
        s = Session()
        save_image(smooth_image(24, 28, 8), tmp_path / "x.png")
        ex.restore(str(tmp_path / "x.png"), None, s, progress=lambda *a, **k: None)
        ex.intervene(0, s, progress=lambda *a, **k: None)
        out = ex.masks(None, None, "mean", 0.5, s)
        emb = ex.embedding(8, s)
        assert "No reference embedding" in emb["emb_md"]
        for m in model.modules():
            assert not m._forward_hooks and not m._forward_pre_hooks
        if conv_type == "standard":
            assert "standard convolutions" in out["m_md"]
            assert len(ex.intervene(0, s, progress=lambda *a, **k: None)["iv_gallery"]) == 3
        ex.export(s)
        from app.session import drop_session

        d = s.workdir
        drop_session(s)
        assert not d.exists()


def test_reference_is_rebuilt_for_other_weights_without_touching_the_shipped_file(tmp_path, monkeypatch):
    import app.runtime as rt
    import interir.reference as refset
    from interir.reference import Reference, load_reference, save_reference

    torch.manual_seed(0)
    holder = rt.ModelHolder(interir.build_model("tiny", n_blocks=1, channels=4), "test")

    def fake_ref(h: str) -> Reference:
        n = 6
        return Reference(embeddings=np.random.default_rng(0).random((n, 3), dtype=np.float32),
                         coords=np.zeros((n, 2), np.float32), labels=np.arange(n) % 2, combos=["haze", "rain"],
                         levels=np.zeros((n, 3), np.float32), sources=["s"] * n,
                         thumbs=np.zeros((n, 4, 4, 3), np.uint8), weights_hash=h,
                         mean=np.zeros(3, np.float32), std=np.ones(3, np.float32), nn_dist_p95=1.0)

    shipped = tmp_path / "assets" / "reference_embedding.npz"
    save_reference(fake_ref("someone-else"), shipped)
    before = shipped.read_bytes()
    monkeypatch.setattr(refset, "SHIPPED_REFERENCE", shipped)
    monkeypatch.setenv("INTERIR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("INTERIR_REFERENCE", raising=False)
    calls = []

    def builder(model, out, quick):
        assert model is holder.model
        calls.append(out)
        ref = fake_ref(holder.hash)
        save_reference(ref, out)
        return ref

    ref, note = rt.ensure_reference(holder, builder=builder)
    assert ref.weights_hash == holder.hash and "rebuilt" in note
    assert calls == [tmp_path / "cache" / f"reference_{holder.hash[:16]}.npz"]
    assert shipped.read_bytes() == before  # never overwritten for non-shipped weights
    ref, note = rt.ensure_reference(holder, builder=builder)  # second start: cached, no rebuild
    assert len(calls) == 1 and ref.weights_hash == holder.hash
    (tmp_path / "damaged.npz").write_bytes(b"junk")
    ref, _ = rt.ensure_reference(holder, path=tmp_path / "damaged.npz", builder=builder)
    assert len(calls) == 2 and load_reference(tmp_path / "damaged.npz").weights_hash == holder.hash


def test_unexpected_errors_go_to_the_log_not_the_page(tmp_path, caplog, monkeypatch):
    import gradio as gr

    from app.handlers import Explorer, Session
    from app.runtime import ModelHolder

    ex = Explorer(ModelHolder(interir.build_model("tiny", n_blocks=1, channels=4), "test"), None, "none")
    save_image(smooth_image(24, 28, 9), tmp_path / "x.png")

    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(ex.holder, "trace", boom)
    with caplog.at_level("INFO", logger="interir.app"), pytest.raises(gr.Error) as err:
        ex.restore(str(tmp_path / "x.png"), None, Session(), progress=lambda *a, **k: None)
    assert "secret internals" not in err.value.message and "server log" in err.value.message
    failed = [r for r in caplog.records if r.exc_info]
    assert failed and "secret internals" in caplog.text and "Traceback" in caplog.text
    assert any(re.search(r"request /restore image=- \d+ ms failed: RuntimeError", r.getMessage())
               for r in caplog.records)


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width×height pixels but holds no image data (enough for a header check)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_size_limits_bombs_and_animations_are_reported_in_the_apps_words(env, client, tmp_path):
    for (w, h), msg in [((9000, 9000), "image is 9000×9000 = 81 MP; the explorer accepts up to 16 MP"),
                        ((20000, 20000), "refused as a decompression bomb (the image declares 400 MP); "
                                         "the explorer accepts up to 16 MP")]:
        path = png_header(tmp_path / f"big_{w}.png", w, h)
        with pytest.raises(AppError) as err:
            client.predict(handle_file(str(path)), api_name="/restore")
        assert msg in str(err.value) and "max-pixels" not in str(err.value) and "Traceback" not in str(err.value)
    frames = [Image.fromarray((smooth_image(30, 40, s) * 255).astype(np.uint8)) for s in (20, 21, 22)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    _, _, info = client.predict(handle_file(str(tmp_path / "anim.gif")), api_name="/restore")
    assert "anim.gif is animated (3 frames): only the first frame is used." in info


@pytest.mark.parametrize("fields, words", [
    (("abc", 3, None, None), "x0 must be a number"),
    ((1, "inf", None, None), "y0 must be finite"),
    ((None, 2, None, None), "give a point"),
])
def test_why_fields_are_checked_by_the_region_rules(fields, words):
    from app.why import parse_region
    from interir.errors import InterIRError

    with pytest.raises(InterIRError, match=words) as info:
        parse_region(*fields)
    assert "\n" not in str(info.value)
    box = parse_region("4", 2.0, 1, "")  # a half-given box is a point; numbers may come as text
    assert (box.kind, box.x, box.y) == ("point", 4.0, 2.0)


def test_serve_seeds_a_prebuilt_reference_set(tmp_path):
    """serve(seed_reference=…) (the browser test with real weights): a set built with the served
    weights is used as it is, not rebuilt, and the seed file itself is left untouched."""
    from app.testing import serve
    from interir.reference import build_reference

    torch.manual_seed(2)
    model = interir.build_model("tiny", n_blocks=2, channels=8).eval()
    interir.save_pretrained(model, tmp_path / "w")
    seed = tmp_path / "seed.npz"
    build_reference(interir.load_pretrained(tmp_path / "w"), out=seed, quick=True, verbose=False)
    before = seed.read_bytes()
    with serve(tmp_path / "w", tmp_path / "server", env={"INTERIR_TWIN_WEIGHTS": ""},
               seed_reference=seed) as server:
        Client(server.url, verbose=False).predict(api_name="/twin")  # the app is up and serving
        log = server.log.read_text()
    assert (tmp_path / "server" / "reference.npz").read_bytes() == before
    assert seed.read_bytes() == before
    assert "reference set:" not in log and "Traceback" not in log  # no rebuild was printed
