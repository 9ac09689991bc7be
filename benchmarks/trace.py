"""Plain forward vs ``interir.trace`` on CPU, both presets, 256² and 512². Target: trace ≤ 1.10×.

"trace" is what ``interir.trace`` costs (hooks, recording, step norms); the early-exit decodes
and data fidelities are computed on first access, so "trace+all" also touches every
iteration's ``image`` and ``fidelity`` (what the explorer's iteration view ends up using).

    python benchmarks/trace.py [--sizes 256,512] [--presets tiny,paper] [--reps 5]

Measured (2-core CPU, tiny, 512²): trace/forward 1.18-1.26× with glibc's default allocator,
1.08-1.13× with GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=268435456.
The hooks themselves cost nothing measurable (no-op hooks on every mask/attention module time
like a plain forward); the overhead is the ~55 MB of intermediates a trace keeps alive, which
glibc otherwise serves from fresh mmap'd (page-faulting) memory.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timeit_interleaved  # noqa: E402

import interir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--presets", default="tiny,paper")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--weights", default=None, help="time this checkpoint instead of the presets")
    args = ap.parse_args()
    torch.manual_seed(0)
    models = ([("weights", interir.load_pretrained(args.weights))] if args.weights else
              [(p, interir.build_model(p).eval()) for p in args.presets.split(",")])
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'model':<8} {'size':>5} {'forward s':>10} {'trace s':>8} {'trace+all s':>12} {'trace/fwd':>10} {'all/fwd':>8}")
    for name, model in models:
        for size in [int(s) for s in args.sizes.split(",")]:
            x = torch.rand(1, 3, size, size)
            reps = args.reps if name != "paper" else max(2, args.reps // 2)

            def fwd():
                with torch.inference_mode():
                    model(x)

            def full():
                tr = interir.trace(model, x)
                for it in tr.iterations:
                    it.image, it.fidelity

            t_f, t_t, t_a = timeit_interleaved([fwd, lambda: interir.trace(model, x), full], reps=reps, warmup=1)
            print(f"{name:<8} {size:>5} {t_f:>10.3f} {t_t:>8.3f} {t_a:>12.3f} {t_t / t_f:>10.2f} {t_a / t_f:>8.2f}")


if __name__ == "__main__":
    main()
