from .epblock import EPBlock, LayerNorm2d
from .explain_conv import ExplainConv2d, KernelAttention, ThresholdMask
from .interir import PRESETS, InterIR, build_model, make_config
from .unfolding import DMUM, MUM, RESM, InitModule, IPBlock, KappaWeight, Shrinkage

__all__ = ["EPBlock", "LayerNorm2d", "ExplainConv2d", "KernelAttention", "ThresholdMask", "PRESETS",
           "InterIR", "build_model", "make_config", "DMUM", "MUM", "RESM", "InitModule", "IPBlock",
           "KappaWeight", "Shrinkage"]
