from __future__ import annotations

import pytest
import torch
from helpers import randomize

from models import PRESETS, SkipSR


@pytest.fixture
def debug_model() -> SkipSR:
    torch.manual_seed(0)
    model = SkipSR(PRESETS["debug"]).eval()
    randomize(model)
    return model
