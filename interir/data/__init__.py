"""Degradation synthesis (haze, rain, noise) and image-folder datasets."""
from .datasets import (IMAGE_EXTS, CleanImageDataset, PairedFolderDataset, discover_eval_sets,
                       list_images)
from .degrade import COMBOS, RANGES, combo_levels, degrade, degrade_image, sample_levels

__all__ = ["COMBOS", "RANGES", "IMAGE_EXTS", "CleanImageDataset", "PairedFolderDataset",
           "combo_levels", "degrade", "degrade_image", "discover_eval_sets", "list_images",
           "sample_levels"]
