"""InterIR: interpretable deep-unfolding multi-degradation image restoration."""
from .errors import InterIRError
from .model import EPBlock, ExplainConv2d, InterIR, build_model, make_config
from .tiling import restore_tiled
from .trace import IterationRecord, Recorder, Trace, trace
from .weights import default_checkpoint, load_pretrained, save_pretrained

__version__ = "0.1.0"
__all__ = ["InterIRError", "EPBlock", "ExplainConv2d", "InterIR", "build_model", "make_config",
           "IterationRecord", "Recorder", "Trace", "trace", "default_checkpoint", "load_pretrained",
           "save_pretrained", "restore_tiled", "__version__"]
