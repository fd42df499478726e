from __future__ import annotations

import pytest
import torch

from models import PRESETS, SkipSR


from helpers import randomize


@pytest.fixture
def debug_model() -> SkipSR:
    torch.manual_seed(0)
    model = SkipSR(PRESETS["debug"]).eval()
    randomize(model)
    return model
