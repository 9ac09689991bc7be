""""Why this pixel?" in the explorer: the computation is :mod:`interir.attribution` and the
figures :mod:`viz.attribution`; this module feeds them the session's trace and the served model.

(a) the attribution map reruns the model with gradients (under the model lock); (b) the
per-iteration change and (c) the most active explainable-conv channels are read from the trace.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator

import numpy as np

from interir.errors import InterIRError
from viz.compact import CompactTrace
from viz.plots import empty_figure

from .runtime import ModelHolder
from .session import Outputs, plot_json

#: radius (pixels of the restored image) of the region around a clicked point
POINT_RADIUS = 8
TOP_CHANNELS = 8


class _Masks(Mapping):
    """The trace's bit-packed masks as a name -> (C, h, w) mapping, unpacked when read."""

    def __init__(self, ct: CompactTrace) -> None:
        self.ct = ct

    def __getitem__(self, name: str) -> np.ndarray:
        return self.ct.mask(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ct.layers)

    def __len__(self) -> int:
        return len(self.ct.layers)


def parse_region(x0: Any, y0: Any, x1: Any = None, y1: Any = None) -> Any:
    """A point (x0, y0) becomes a disc of radius :data:`POINT_RADIUS`; with x1, y1 a box."""
    from interir.attribution import Region, coordinate

    def number(v: Any, name: str) -> float | None:  # an empty field is "not given"
        return None if v in (None, "") else coordinate(v, name)

    a, b, c, d = (number(v, n) for v, n in ((x0, "x0"), (y0, "y0"), (x1, "x1"), (y1, "y1")))
    if a is None or b is None:
        raise InterIRError("give a point (x, y) on the restored image, or a box (x0, y0, x1, y1)")
    if c is None or d is None:
        return Region.point(a, b, radius=POINT_RADIUS)
    return Region.box(min(a, c), min(b, d), max(a, c) + 1, max(b, d) + 1)  # corners inclusive


def explain_region(holder: ModelHolder, ct: CompactTrace, x: np.ndarray, x0: Any, y0: Any, x1: Any,
                   y1: Any, progress: Any) -> Outputs:
    """The "Why this pixel?" panel for one region: (a), (b), (c) and a text that names the method."""
    try:
        from interir import attribution as A
        from viz import attribution as V
    except ImportError:  # the attribution module ships separately (interir/attribution.py)
        msg = "This build has no interir.attribution: the “Why this pixel?” panel is not available."
        return {"why_attr": plot_json(empty_figure(msg)), "why_iter": plot_json(empty_figure(msg)),
                "why_chan": plot_json(empty_figure(msg)), "why_md": msg}
    region = parse_region(x0, y0, x1, y1)
    H, W = ct.input.shape[:2]
    region.bounds(H, W)  # a region outside the image: a one-line error before any work
    progress(0.1, desc="Attribution: integrated gradients through the unfolding")
    with holder.lock:
        attr = A.attribution_map(holder.model, holder.to_tensor(x), region)
    change = A.iteration_change(ct.input, list(ct.images), region)
    chans = A.channel_activity(_Masks(ct), ct.tau, region, (H, W), top_k=TOP_CHANNELS,
                               attention=ct.attention, image_rates=ct.mask_rate) if ct.has_masks else []
    k_max = int(np.argmax(change.region))
    md = (f"**Region:** {region.describe()}.  \n**(a)** {attr.method}: {attr.inside_share:.0%} of the "
          f"attribution lies inside the region (completeness gap {attr.completeness_gap:.1%}, "
          f"{attr.seconds:.1f} s).  \n**(b)** Iteration k = {k_max} changed the region most "
          f"({change.region[k_max] * 255:.2f}/255 on average; k = 0 is measured from the input).  \n")
    if chans:
        top = chans[0]
        md += (f"**(c)** Most active there: `{top.layer}` channel {top.channel}, mask M = 1 on "
               f"{top.region:.0%} of the region ({top.image:.0%} of the image).")
    else:
        md += "**(c)** This model has no explainable convolutions: no masks to rank."
    return {"why_attr": plot_json(V.attribution_figure(ct.input, attr, region)),
            "why_iter": plot_json(V.iteration_change_figure(change, selected=k_max)),
            "why_chan": plot_json(V.channels_figure(chans)), "why_md": md}


__all__ = ["explain_region", "parse_region", "POINT_RADIUS"]
