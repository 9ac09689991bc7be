"""Start the explorer: ``python app.py [--weights DIR] [--host H] [--port P]``.

Serves on 127.0.0.1:7860 unless ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (or --host /
--port) say otherwise. Weights: --weights, else ``$INTERIR_WEIGHTS``, else the shipped
checkpoint, else a random-init tiny model (with a warning in the page). Never ``share=True``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

QUEUE_KWARGS: dict[str, Any] = dict(default_concurrency_limit=2, max_size=32)


def create_app(weights: str | None = None, reference: str | None = None, holder: Any = None,
               ) -> tuple[Any, Any]:
    """Build (demo, explorer). ``holder`` lets tests inject a model (``ModelHolder(model, ...)``)."""
    from .handlers import Explorer
    from .session import clean_stale_sessions
    from .runtime import ModelHolder, ensure_reference, limit_blas_threads, load_twin, tune_malloc
    from .ui import build_demo

    limit_blas_threads()
    tune_malloc()
    clean_stale_sessions()
    holder = holder or ModelHolder.from_env(weights)
    ref, note = ensure_reference(holder, reference)
    twin, twin_note = load_twin(holder)
    explorer = Explorer(holder, ref, note, twin, twin_note)
    demo = build_demo(explorer)
    demo.queue(**QUEUE_KWARGS)
    return demo, explorer


def main(argv: list[str] | None = None) -> int:
    from interir.errors import InterIRError

    p = argparse.ArgumentParser(prog="python app.py", description="InterIR Explorer (Gradio app).")
    p.add_argument("--weights", help="weights folder (config.json + model.safetensors)")
    p.add_argument("--reference", help="reference embedding .npz (default: app/assets/...)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        demo, explorer = create_app(args.weights, args.reference)
    except InterIRError as exc:
        print(f"app: error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("interir.app").info("model: %s", explorer.holder.describe())
    from .ui import launch_kwargs

    demo.launch(server_name=args.host, server_port=args.port, share=False, **launch_kwargs())
    return 0
