"""``interir eval``: PSNR / SSIM of a checkpoint on paired test folders, printed as a
Table-1-style markdown table (model, degraded input, classical DCP + NLM baseline), then the
brightness bias per combination, with ``--iterations`` the per-iteration behaviour and with
``--interventions`` the effect of uniform attention and of Λ = 0 per combination."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InterIRError
from ..fileio import check_output_path, require_folder
from ..weights import DEFAULT_CHECKPOINT_PATH

HELP = ("evaluate a checkpoint on DIR/<combo>/input + target folders (PSNR/SSIM per combo) "
        "and print a markdown table")

def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive integer, got 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``eval`` options."""
    parser.add_argument("--weights", metavar="DIR", default=None,
                        help="checkpoint folder (config.json + model.safetensors); default: the "
                             f"shipped {DEFAULT_CHECKPOINT_PATH}")
    parser.add_argument("--data", metavar="DIR", required=True,
                        help="test data: DIR/<combo>/input + DIR/<combo>/target (same file "
                             "names), or DIR/input + DIR/target")
    parser.add_argument("--y-channel", action="store_true",
                        help="measure on the BT.601 Y channel instead of RGB")
    parser.add_argument("--crop-border", type=_non_negative_int, default=0, metavar="N",
                        help="ignore N pixels at each border (default 0)")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write the results as JSON")
    parser.add_argument("--markdown", metavar="FILE", default=None,
                        help="also write the markdown table to FILE")
    parser.add_argument("--no-classical", action="store_true",
                        help="skip the classical DCP + NLM baseline row")
    parser.add_argument("--max-images", type=_positive_int, default=None, metavar="N",
                        help="evaluate at most the first N images of each combo")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                        help="where the model runs (default cpu; auto = cuda if available)")
    parser.add_argument("--iterations", action="store_true",
                        help="also trace every image: early-exit PSNR and relative data "
                             "residual over the iterations, and how often they are monotone")
    parser.add_argument("--interventions", action="store_true",
                        help="also measure the effect of each intervention (uniform attention, "
                             "Λ = 0) per combo: PSNR/SSIM change and mean output change")


def _check_output(path: str | None, flag: str) -> None:
    if path is not None:
        check_output_path(path, flag=flag)


def _load_model(weights: Path):
    import interir

    require_folder(weights, "weights", "a folder with config.json and model.safetensors")
    for name in ("config.json", "model.safetensors"):
        if not (weights / name).is_file():
            raise InterIRError(f"{weights}: no {name} in the weights folder")
    try:
        return interir.load_pretrained(weights)
    except InterIRError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken checkpoint is a user problem
        raise InterIRError(f"{weights}: cannot load checkpoint ({type(exc).__name__}: {exc})") \
            from None


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InterIRError("--device cuda: no CUDA device is available")
    return name


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print / write the table."""
    from ..eval import (brightness_markdown, evaluate, evaluate_interventions,
                        interventions_markdown, iterations_markdown, to_json, to_markdown,
                        write_text_atomic)

    data = require_folder(args.data, "data", "--data to be a folder of image pairs")
    _check_output(args.json, "--json")
    _check_output(args.markdown, "--markdown")
    if args.weights is None:
        from ..weights import default_checkpoint, repo_root

        shipped = default_checkpoint()  # <repo root>/DEFAULT_CHECKPOINT_PATH if complete
        if shipped is None:
            raise InterIRError("no --weights given and the shipped checkpoint "
                               f"{repo_root() / DEFAULT_CHECKPOINT_PATH} was not "
                               "found; pass --weights DIR")
        weights = shipped
    else:
        weights = Path(args.weights)
    device = _device(args.device)
    model = _load_model(weights).to(device)

    def progress(it, total, desc):
        from tqdm import tqdm

        return tqdm(it, total=total, desc=desc, unit="img", file=sys.stderr, leave=False,
                    disable=None)

    result = evaluate(model, data, y_channel=args.y_channel, crop_border=args.crop_border,
                      device=device, max_images=args.max_images,
                      include_classical=not args.no_classical, weights=str(weights),
                      progress=progress, iterations=args.iterations)
    table = to_markdown(result) + "\n" + brightness_markdown(result)
    if args.iterations:
        table += "\n" + iterations_markdown(result)
    if args.interventions:
        result["interventions"] = evaluate_interventions(
            model, data, y_channel=args.y_channel, crop_border=args.crop_border, device=device,
            max_images=args.max_images, progress=progress)
        table += "\n" + interventions_markdown(result["interventions"])
    if args.json:
        write_text_atomic(args.json, to_json(result))
    if args.markdown:
        write_text_atomic(args.markdown, table)
    sys.stdout.write(table)
    return 0
