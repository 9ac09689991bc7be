"""Speed as felt in a browser: Playwright drives Debian's Chromium against ``python app.py``.

    python benchmarks/browser_latency.py [--weights DIR] [--size 512] [--repeats 3]

For each upload of a fresh size×size photo (degraded with haze + rain + noise) it prints the time
from handing the file to the page until: the restored image is shown, the iteration panel (frame,
change map, curves) is drawn, and the /panels reply (every other tab's content) has arrived;
then the time each tab takes to show its content when opened, and the iteration slider's step
time (input event -> new frame and text on the page). Medians over the repeats. The shipped
checkpoint and its reference set are used unless --weights is given. Never ``playwright install``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TABS = [("4 · Matrices A, B, Λ", "(s) => document.querySelectorAll(s).length >= 2", "#matrices-plot .hm image"),
        ("5 · Explainable conv", "(s) => document.querySelectorAll(s).length >= 4", "#rank-plot .bars path"),
        ("6 · Embedding", "(s) => document.querySelectorAll(s).length >= 20",
         "#embedding-plot .scatterlayer .point"),
        ("7 · Why this pixel?", "(s) => Array.from(document.querySelectorAll(s)).some(i => i.complete && "
                                "i.naturalWidth > 0)", "#why-image img")]
# Records when each queue event's result arrives (gradio streams them over fetch): window.__done
# gets performance.now() of every "process_completed" message.
TAP_JS = """(() => { window.__done = []; const f = window.fetch;
  window.fetch = async (...a) => { const r = await f(...a);
    const url = String(a[0] && a[0].url || a[0]);
    if (!url.includes('/queue/data') || !r.body) { return r; }
    const [mine, theirs] = r.body.tee(); const rd = mine.getReader(); const dec = new TextDecoder();
    (async () => { for (;;) { const {done, value} = await rd.read(); if (done) break;
        const s = dec.decode(value); const m = s.match(/process_completed/g);
        if (m) { for (const _ of m) window.__done.push(performance.now()); } } })();
    return new Response(theirs, {headers: r.headers, status: r.status}); }; })();"""
# The visible frame and change map (the viewer stacks every k's, hidden but one): their sources
# if both are loaded, else null.
SHOWN_JS = """() => { const v = (sel) => Array.from(document.querySelectorAll(sel)).find(i => i.offsetParent !== null);
    const a = v('#img-k img'), b = v('#diff-k img');
    return a && b && a.complete && b.complete && a.naturalWidth > 0 && b.naturalWidth > 0 ? [a.src, b.src] : null; }"""
# Remember what is shown, then move the slider as a drag does (an input event).
STEP_JS = """(k) => { window.__shown = (%s)(); const r = document.querySelector('#k-slider input[type=range]');
    const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
    set.call(r, String(k)); r.dispatchEvent(new Event('input', {bubbles: true})); }""" % SHOWN_JS
# Step k is on the page: its step line, and a new frame and change map, loaded.
STEPPED_JS = """(k) => { const t = document.querySelector('#step-info').innerText;
    if (!t.includes('k = ' + k + ' ') && !t.includes('k = ' + k + ' (')) { return false; }
    const now = (%s)(), old = window.__shown;
    return !!now && (!old || (now[0] !== old[0] && now[1] !== old[1])); }""" % SHOWN_JS


def make_images(size: int, n: int, folder: Path) -> list[Path]:
    from benchmarks.app_latency import test_image
    from interir.imageio import save_image

    paths = []
    for i in range(n):
        paths.append(folder / f"upload_{i}.png")
        save_image(test_image(size, seed=i), paths[-1])
    return paths


def med(v: list[float]) -> str:
    return f"{1000 * statistics.median(v):7.0f} ms (min {1000 * min(v):5.0f}, max {1000 * max(v):5.0f})"


def upload_once(page, url: str, path: Path) -> dict[str, float]:
    """Load the page afresh (empty panels), upload one file; seconds until each milestone."""
    marks: dict[str, float] = {}
    page.goto(url)
    page.wait_for_selector("#restore-btn")
    page.wait_for_timeout(1500)  # let the page finish mounting (an upload sooner can be lost)
    page.evaluate("() => { window.__done = []; window.__t0 = performance.now(); }")
    t0 = time.perf_counter()
    page.locator("#input-image input[type=file]").set_input_files(str(path))
    page.wait_for_function("() => (document.querySelector('#restore-info')?.innerText || '').includes('Restored')"
                           " && Array.from(document.querySelectorAll('#before-after img'))"
                           ".filter(i => i.complete && i.naturalWidth > 0).length >= 2")
    marks["restored image shown"] = time.perf_counter() - t0
    page.wait_for_function("() => (document.querySelector('#curves-info')?.innerText || '').includes('Data fidelity')"
                           f" && !!({SHOWN_JS})() && "
                           "document.querySelectorAll('#curves .scatterlayer .trace').length >= 2")
    marks["iteration panel drawn"] = time.perf_counter() - t0
    # restore (upload), panels and panels_more: three events; hidden tabs render only when opened
    page.wait_for_function("() => window.__done.length >= 3")
    marks["every panel's data received"] = page.evaluate("() => (window.__done[2] - window.__t0) / 1000")
    return marks


def run(weights: str | None, size: int, repeats: int) -> int:
    from playwright.sync_api import sync_playwright

    from app.testing import serve

    tmp = Path(tempfile.mkdtemp(prefix="interir-browser-bench-"))
    images = make_images(size, repeats + 1, tmp)
    env = {"INTERIR_REFERENCE": ""}  # the shipped (or cached) reference set, as `python app.py`
    with serve(weights, tmp / "server", quick_reference=False, env=env, timeout=600) as server, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script(TAP_JS)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.set_default_timeout(120_000)
        upload_once(page, server.url, images[-1])  # warm-up (first page render, first trace)
        rows: dict[str, list[float]] = {}
        tab_rows: dict[str, list[float]] = {}
        steps: list[float] = []
        viewer_bytes: list[int] = []  # the iteration viewer's HTML (every k's frames as data URIs)
        for i in range(repeats):
            for key, v in upload_once(page, server.url, images[i]).items():
                rows.setdefault(key, []).append(v)
            for name, js, sel in TABS:  # open each tab: time until its content is on screen
                t0 = time.perf_counter()
                page.get_by_role("tab", name=name).click()
                page.wait_for_function(js, arg=sel)
                tab_rows.setdefault(name, []).append(time.perf_counter() - t0)
            page.get_by_role("tab", name="3 · Iterations").click()
            n = int(page.evaluate("() => document.querySelector('#k-slider input[type=range]').max"))
            for k in list(range(n - 1, -1, -1)) + list(range(1, n + 1)):
                t0 = time.perf_counter()
                page.evaluate(STEP_JS, k)
                page.wait_for_function(STEPPED_JS, arg=k)
                steps.append(time.perf_counter() - t0)
            viewer_bytes.append(page.evaluate("() => document.querySelector('.iter-viewer')?.outerHTML.length || 0"))
        browser.close()
    print(f"\n| browser ({size}², Chromium, median of {repeats} uploads) | time |\n|---|---|")
    for key, v in rows.items():
        print(f"| upload → {key} | {med(v)} |")
    for key, v in tab_rows.items():
        print(f"| open tab {key} | {med(v)} |")
    print(f"| iteration slider step ({len(steps)} steps) | {med(steps)} |")
    if any(viewer_bytes):
        print(f"\niteration viewer HTML (every k's frames): {statistics.median(viewer_bytes) / 2**20:.2f} MB median")
    print(f"\nconsole errors: {len(errors)}" + (f" (first: {errors[0][:200]})" if errors else ""))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="weights folder (default: the shipped checkpoint)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    return run(args.weights, args.size, args.repeats)


if __name__ == "__main__":
    sys.exit(main())
