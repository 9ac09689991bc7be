"""Start the explorer in a subprocess for tests and benchmarks (a context manager).

    with serve(weights_dir, tmp_dir) as server:
        Client(server.url).predict(...)

The server runs ``python app.py`` on a free loopback port with its own reference set and cache
folder (never touching ``app/assets``), and is stopped (its process group) on exit. ``seed_reference``
copies a prebuilt set (e.g. the shipped one) in first: the app uses it when it was built with the
served weights, and rebuilds it inside the work folder otherwise.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    pid: int
    log: Path


@contextmanager
def serve(weights: str | os.PathLike | None, workdir: str | os.PathLike, quick_reference: bool = True,
          env: dict[str, str] | None = None, timeout: float = 180.0,
          seed_reference: str | os.PathLike | None = None) -> Iterator[Served]:
    """Run the app on 127.0.0.1:<free port>; yields its URL and pid. Log: ``workdir/app.log``."""
    workdir = Path(workdir)
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)  # session files stay inside workdir
    if seed_reference is not None and Path(seed_reference).is_file():
        shutil.copyfile(seed_reference, workdir / "reference.npz")
    port = free_port()
    full_env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
                    GRADIO_ANALYTICS_ENABLED="False", INTERIR_CACHE_DIR=str(workdir / "cache"),
                    INTERIR_REFERENCE=str(workdir / "reference.npz"),
                    INTERIR_REFERENCE_QUICK="1" if quick_reference else "0",
                    GRADIO_TEMP_DIR=str(workdir / "gradio"), TMPDIR=str(workdir / "tmp"),
                    PYTHONUNBUFFERED="1")
    if weights is not None:
        full_env["INTERIR_WEIGHTS"] = str(weights)
    full_env.update(env or {})
    log = open(workdir / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=str(workdir), env=full_env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app exited with {proc.returncode}: "
                                   f"{(workdir / 'app.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "gradio_api/info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app did not start in {timeout:.0f} s: "
                                   f"{(workdir / 'app.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield Served(url, proc.pid, workdir / "app.log")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
