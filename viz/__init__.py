"""Pure visualisation functions for InterIR traces, shared by the explorer app and
``interir report``. Nothing here runs the model or imports gradio.

Data flow: ``interir.trace(model, x)`` -> :func:`compact_trace` -> :class:`CompactTrace`
(numpy, compact) -> figures (:mod:`viz.plots`), images (:mod:`viz.images`), the embedding map
(:mod:`viz.embedding`) and the HTML report (:mod:`viz.report`).
"""
from .compact import CompactTrace, LayerName, compact_trace, parse_layer, to_uint8_hwc
from .embedding import Placement, Reference, load_reference, place, save_reference

__all__ = ["CompactTrace", "LayerName", "compact_trace", "parse_layer", "to_uint8_hwc",
           "Placement", "Reference", "load_reference", "place", "save_reference"]
