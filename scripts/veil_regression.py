"""Can the veil be read from a degraded photo at all? A dedicated regressor, measured.

The shipped models' largest remaining error is brightness (``docs/model_sweep.md``, "What the
remaining error is"): too bright where the synthesis adds a veil, too dark where it adds none.
This script asks whether the veil is identifiable from the input under this synthesis, apart
from any restoration network: a small CNN (:class:`VeilRegressor`, global pooling over strided
convolutions, plus the input's global channel statistics) is trained to predict, per channel,

    v = mean(degraded) − mean(clean)        (the brightness the degradation added)

from the degraded image alone, on the synthetic pairs ``interir train`` draws (the training
photos; the validation and test photos excluded). It then reports on the 35 validation pairs,
per combination and in /255 (brightness as ``interir eval``: the mean over the channels):

* the error of a constant prediction (the training median of v: what knowing nothing gives);
* the error of the regressor's v̂;
* for each weights folder given: the error of the veil the network removes
  (mean(degraded) − mean(output)), its PSNR, and its PSNR with each output channel's mean set
  to mean(degraded) − v̂ (what a brightness head as good as the regressor would give; the
  oracle that sets the target's means is ``scripts/brightness_check.py``).

    OMP_NUM_THREADS=1 python scripts/veil_regression.py --steps 3000 checkpoints/interir-n6
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import interir  # noqa: E402
from interir.data.datasets import CleanImageDataset, discover_eval_sets  # noqa: E402
from interir.data.degrade import COMBOS  # noqa: E402
from interir.errors import InterIRError  # noqa: E402
from interir.metrics import psnr  # noqa: E402
from interir.train import make_batch, read_exclude_list  # noqa: E402


def global_stats(x: torch.Tensor) -> torch.Tensor:
    """(B, 16) image-wide statistics of (B, 3, H, W) in [0, 1]: per channel mean, std, 2nd and
    98th percentile; the mean and 2nd percentile of the dark channel (min over channels) and
    the mean and 98th percentile of the bright one."""
    flat = x.flatten(2)
    q = torch.quantile(flat, torch.tensor([0.02, 0.98], dtype=x.dtype), dim=2)  # (2, B, 3)
    dark, bright = x.amin(1).flatten(1), x.amax(1).flatten(1)
    return torch.cat([flat.mean(2), flat.std(2), q[0], q[1],
                      dark.mean(1, keepdim=True), torch.quantile(dark, 0.02, dim=1)[:, None],
                      bright.mean(1, keepdim=True), torch.quantile(bright, 0.98, dim=1)[:, None]],
                     1)


class VeilRegressor(nn.Module):
    """Per-channel veil v̂ (B, 3) from a degraded image of any size: five stride-2 3×3 conv
    stages (to 1/32), their global mean, max and min, with :func:`global_stats`, into an MLP."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [5, width, width, 2 * width, 2 * width, 2 * width]
        self.stages = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1)
                                    for a, b in zip(chans[:-1], chans[1:]))
        self.head = nn.Sequential(nn.Linear(3 * chans[-1] + 16, 128), nn.GELU(),
                                  nn.Linear(128, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, x.amin(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        for conv in self.stages:
            h = F.gelu(conv(h))
        f = h.flatten(2)
        feats = torch.cat([f.mean(2), f.amax(2), f.amin(2), global_stats(x)], 1)
        return self.head(feats)


def veil(degraded: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The brightness the degradation added, per channel: (B, 3)."""
    return degraded.mean((2, 3)) - clean.mean((2, 3))


def train(args: argparse.Namespace) -> tuple[VeilRegressor, torch.Tensor]:
    """The fitted regressor and the training median of v (the constant baseline)."""
    torch.manual_seed(0)
    exclude = (read_exclude_list("configs/splits/bsd400_test.txt")
               + read_exclude_list("configs/splits/bsd400_val.txt"))
    data = CleanImageDataset(args.train, patch_size=args.size, augment=True, exclude=exclude)
    net = VeilRegressor(args.width)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps, eta_min=args.lr / 100)
    seen, run, t0 = [], 0.0, time.time()
    for it in range(args.steps):
        x, y = make_batch(data, args.batch, COMBOS, args.seed, it, 0, torch.device("cpu"))
        v = veil(x, y)
        seen.append(v)
        loss = (net(x) - v).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run = 0.98 * run + 0.02 * loss.item() if it else loss.item()
        if it % 200 == 0 or it == args.steps - 1:
            print(f"step {it}: L1 {run * 255:.2f}/255  ({time.time() - t0:.0f} s)", flush=True)
    return net.eval(), torch.cat(seen).median(0).values


def evaluate(net: VeilRegressor, const: torch.Tensor, sets: dict, models: dict) -> None:
    """Print the per-combination table described in the module docstring for the validation
    ``sets`` (:func:`discover_eval_sets`) and the loaded ``models`` ({weights folder: model})."""
    weights = list(models)
    rows: dict[str, list[list[float]]] = {}
    for combo, ds in sets.items():
        for i in range(len(ds)):
            x, y = (t.unsqueeze(0).float() for t in ds[i][:2])
            v = veil(x, y)[0]
            with torch.inference_mode():
                vh = net(x)[0]
            row = [float((const - v).mean().abs() * 255), float((vh - v).mean().abs() * 255)]
            for m in models.values():
                with torch.inference_mode():
                    out = m(x).clamp(0, 1)
                removed = x.mean((2, 3))[0] - out.mean((2, 3))[0]
                set_mean = (out - out.mean((2, 3), keepdim=True)
                            + (x.mean((2, 3)) - vh).view(1, 3, 1, 1)).clamp(0, 1)
                to_np = lambda t: t[0].permute(1, 2, 0).double().numpy()  # noqa: E731
                row += [float((removed - v).mean().abs() * 255),
                        psnr(to_np(out), to_np(y)), psnr(to_np(set_mean), to_np(y))]
            rows.setdefault(combo, []).append(row)
    head = ["combination", "constant", "regressor"]
    for w in weights:
        head += [f"{w}: net", "PSNR", "means from v̂"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" + "---:|" * (len(head) - 1))
    means = []
    for combo, r in rows.items():
        m = np.mean(r, 0)
        means.append(m)
        print(f"| {combo} | " + " | ".join(f"{v:.2f}" for v in m) + " |")
    print("| average | " + " | ".join(f"{v:.2f}" for v in np.mean(means, 0)) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="*", help="checkpoint folders to compare (optional)")
    ap.add_argument("--train", default="data_local/train_clean")
    ap.add_argument("--val", default="data_local/val")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--save", default=None, help="write the regressor's weights here (safetensors)")
    args = ap.parse_args(argv)
    try:  # every input checked before the training minutes are spent
        if not Path(args.train).is_dir():
            raise InterIRError(f"--train {args.train}: no such folder")
        sets = discover_eval_sets(args.val)
        models = {w: interir.load_pretrained(w).eval() for w in args.weights}
    except InterIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    net, const = train(args)
    if args.save:
        from safetensors.torch import save_file
        save_file(net.state_dict(), args.save)
    print(f"constant prediction (training median of v, /255): "
          f"{', '.join(f'{c * 255:.1f}' for c in const.tolist())}")
    evaluate(net, const, sets, models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
