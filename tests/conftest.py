import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def small_train_data(tmp_path_factory) -> Path:
    """A tiny training tree: clean/ (three 40² noise photos) and val/{haze,noise}/{input,target}/
    (two 16×20 pairs each), for short training runs."""
    from helpers import write_val_pairs
    from interir.imageio import save_image

    root = tmp_path_factory.mktemp("small_train_data")
    rng = np.random.default_rng(0)
    (root / "clean").mkdir()
    for i in range(3):
        save_image(rng.random((40, 40, 3)).astype(np.float32), root / "clean" / f"c{i}.png")
    write_val_pairs(root, (16, 20), rng)
    return root
