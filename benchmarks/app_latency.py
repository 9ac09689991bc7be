"""Explorer latency and memory (issue 5 targets, on 2 CPU cores with the shipped checkpoint):

* restore + full trace of a 512×512 image ≤ 1.0 s (≤ 1.5 s for the n ≥ 6 models of issue 10);
* the iteration slider and the selectors are served from the cached trace: ≤ 150 ms server time;
* resident memory of the server after 100 requests within 5 % of that after 20.

    python benchmarks/app_latency.py [--weights DIR] [--size 512] [--repeats 5] [--requests 100]

Part 1 calls the handlers in-process (server time = the handler's own time, including writing
the PNGs and figure JSON gradio sends). Part 2 launches ``python app.py`` and drives it with
gradio_client (round trip = server + HTTP + client download), reading the server's RSS from /proc.
Without a checkpoint it uses the random-init tiny model (same architecture, same cost).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def test_image(size: int, seed: int = 0) -> np.ndarray:
    """The astronaut photo resized to size×size and degraded with haze + rain + noise."""
    import skimage.data as skd
    from PIL import Image

    from interir.data.degrade import degrade_image

    clean = np.asarray(Image.fromarray(skd.astronaut()).resize((size, size), Image.Resampling.LANCZOS))
    return degrade_image(clean.astype(np.float32) / 255.0, 60, 120, 15, seed=seed)


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):7.1f} ms (max {1000 * max(values):6.1f})"


def part1(weights: str | None, size: int, repeats: int) -> None:
    import torch

    from app.handlers import Explorer, Session
    from app.runtime import ModelHolder, ensure_reference, limit_blas_threads, tune_malloc
    from interir.imageio import save_image

    limit_blas_threads()  # as app.main.create_app does
    tune_malloc()
    holder = ModelHolder.from_env(weights)
    ref, note = ensure_reference(holder)
    ex = Explorer(holder, ref, note)
    print(f"model: {holder.describe()}")
    print(f"torch threads: {torch.get_num_threads()}, reference: {note}\n")
    tmp = Path(tempfile.mkdtemp(prefix="interir-bench-"))
    img = test_image(size)
    path = tmp / "in.png"
    save_image(img, path)
    clean_free = lambda *a, **k: None  # noqa: E731 (no gradio progress outside a request)
    s = Session()
    ex.restore(str(path), None, s, progress=clean_free)  # warm-up
    ex.panels(s)
    rows: list[tuple[str, str]] = []
    model_t, restore_t = [], []
    x = img
    for _ in range(repeats):
        t0 = time.perf_counter()
        holder.trace(x)
        model_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ex.restore(str(path), None, s, progress=clean_free)
        restore_t.append(time.perf_counter() - t0)
    rows.append((f"model trace only ({size}²)", ms(model_t)))
    rows.append((f"restore handler ({size}², read+trace+compact+PNGs)", ms(restore_t)))
    t_panels = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ex.panels(s)
        t_panels.append(time.perf_counter() - t0)
    rows.append(("panels after restore (iteration viewer with every k's frames, curves)", ms(t_panels)))
    n = s.trace.n_iter - 1
    ct = s.trace
    layers = ct.layers
    # the page steps through k in the browser (panels ships every k's frames); /step is the API's
    ex.restore(str(path), None, s, progress=clean_free)  # a fresh trace: nothing encoded yet
    first = []
    for k in range(n + 1):
        t0 = time.perf_counter()
        ex.step(k, s)
        first.append(time.perf_counter() - t0)
    rows.append(("/step (API), first visit of each k (encodes 2 PNGs)", ms(first)))
    cases = {
        "/step (API), revisits": [lambda k=k: ex.step(k, s) for k in range(n + 1)],
        "play tick": [lambda k=k: ex.play_tick(k, s) for k in range(n + 1)],
        "matrices (k / channel)": [lambda k=k, c=c: ex.matrices(k, c, s)
                                   for k in range(n + 1) for c in ("mean", "0", str(ct.channels - 1))],
        "masks (block / conv / channel / opacity)": [
            lambda L=L, c=c: ex.masks(None, L, c, 0.6, s) for L in layers[:: max(1, len(layers) // 6)]
            for c in ("mean", "0", "3")] if layers else [],
        "embedding (neighbours slider)": [lambda k=k: ex.embedding(k, s) for k in (4, 8, 12)]
        if ref is not None else [],
    }
    worst = statistics.median(first)
    for name, calls in cases.items():
        if not calls:
            rows.append((name, "n/a"))
            continue
        times = []
        for _ in range(max(1, repeats // 2)):
            for call in calls:
                t0 = time.perf_counter()
                call()
                times.append(time.perf_counter() - t0)
        worst = max(worst, statistics.median(times))
        rows.append((name, ms(times)))
    t_iv = []
    for _ in range(2):
        s.reruns.clear()
        t0 = time.perf_counter()
        ex.intervene(n // 2, s, progress=clean_free)
        t_iv.append(time.perf_counter() - t0)
    rows.append(("intervene (2 reruns of the model)", ms(t_iv)))
    t0 = time.perf_counter()
    ex.export(s)
    rows.append(("export (npz + json + html report)", f"{1000 * (time.perf_counter() - t0):7.1f} ms"))
    print("| in-process handler | server time: median (max) |")
    print("|---|---|")
    for a, b in rows:
        print(f"| {a} | {b} |")
    print(f"\ncompact trace kept per session: {s.trace.nbytes() / 1e6:.1f} MB "
          f"+ model input {s.x.nbytes / 1e6:.1f} MB")
    med = statistics.median(restore_t)
    print(f"restore ≤ 1.0 s (issue 5, the n = 2 model): {'yes' if med <= 1.0 else 'NO'} · "
          f"≤ 1.5 s (issue 10, n ≥ 6): {'yes' if med <= 1.5 else 'NO'} · "
          f"selectors ≤ 150 ms: {'yes' if worst <= 0.15 else 'NO'}")


def part2(weights: str | None, size: int, requests: int) -> None:
    from gradio_client import Client, handle_file

    from app.testing import serve
    from interir.imageio import save_image

    tmp = Path(tempfile.mkdtemp(prefix="interir-bench-srv-"))
    paths = []
    for i in range(3):
        p = tmp / f"in{i}.png"
        save_image(test_image(size, seed=i), p)
        paths.append(p)
    env = {"INTERIR_REFERENCE": str(ROOT / "app" / "assets" / "reference_embedding.npz")} \
        if (ROOT / "app" / "assets" / "reference_embedding.npz").is_file() else {}
    with serve(weights, tmp / "server", quick_reference=False, env=env) as server:
        def rss() -> float:  # MiB, from /proc (Linux; no psutil needed)
            for line in Path(f"/proc/{server.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
            return float("nan")

        c = Client(server.url, verbose=False)
        marks: dict[int, float] = {}
        rt_restore, rt_step = [], []
        for i in range(1, requests + 1):
            t0 = time.perf_counter()
            c.predict(handle_file(str(paths[i % 3])), None, api_name="/restore")
            rt_restore.append(time.perf_counter() - t0)
            c.predict(api_name="/panels")
            t0 = time.perf_counter()
            c.predict(i % 3, api_name="/step")
            rt_step.append(time.perf_counter() - t0)
            if i in (1, 20, 50, requests):
                marks[i] = rss()
        print(f"\n| server via gradio_client ({size}², {requests} requests = restore + panels + step) | value |")
        print("|---|---|")
        print(f"| restore round trip | {ms(rt_restore)} |")
        print(f"| step round trip | {ms(rt_step)} |")
        for i, v in marks.items():
            print(f"| server RSS after {i} requests | {v:.0f} MiB |")
        if 20 in marks and requests in marks:
            growth = (marks[requests] - marks[20]) / marks[20] * 100
            print(f"| RSS growth 20 -> {requests} | {growth:+.1f} % (target within ±5 %) |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", help="weights folder (default: $INTERIR_WEIGHTS, the shipped checkpoint, "
                                     "else random-init tiny)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--skip-server", action="store_true", help="only the in-process part")
    args = p.parse_args()
    if args.weights:  # the server subprocess runs elsewhere: pass an absolute path
        args.weights = str(Path(args.weights).resolve())
    part1(args.weights, args.size, args.repeats)
    if not args.skip_server:
        part2(args.weights, args.size, args.requests)


if __name__ == "__main__":
    main()
