"""Shared by the selftest tests: small input sizes (the dry run in seconds) and seeded MobileNet weights."""

from __future__ import annotations

import pytest

from runtime.selftest.cases import Sizes

# Small, still with an odd size (not a multiple of 32) and a batch above 1 (a few faces of 32 to 40 pixels fit).
# One batch of images per run shape (the command runs four).
SMALL = Sizes(fixed=(96, 64), odd=(40, 72), large=(128, 96), batch=2, batches=1)


@pytest.fixture(scope="session")
def mnet_model():
    from runtime.selftest.model import random_model

    return random_model("mobilenet0.25")
