"""Pure visualisation functions for InterIR traces, shared by the explorer app and
``interir report``. Nothing here runs the model or imports gradio.

Data flow: ``interir.trace(model, x)`` -> :func:`compact_trace` -> :class:`CompactTrace`
(numpy, compact) -> figures (:mod:`viz.plots`), images (:mod:`viz.images`) and the HTML report
(:mod:`viz.report`). The embedding map's reference set is :mod:`interir.reference`.
"""
from .compact import CompactTrace, LayerName, compact_trace, parse_layer, to_uint8_hwc

__all__ = ["CompactTrace", "LayerName", "compact_trace", "parse_layer", "to_uint8_hwc"]
