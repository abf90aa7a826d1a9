"""Runtime test helpers: a replay backend that returns the stored outputs of the original implementation.

It stands in for the network wherever a test checks what surrounds it (pre-processing, priors, decoding,
NMS, mapping back, JSON, CLI), and checks that the input it is given is the stored reference input.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from network.config import MOBILENET_0_25
from runtime.backends.base import Backend


class ReplayBackend(Backend):
    """A backend over stored raw outputs for one 640×640 input; records the batches it saw."""

    name = "replay"
    cfg = MOBILENET_0_25
    device = torch.device("cpu")

    def __init__(self, reference: dict, fixed_input_size=None):
        self.reference = reference
        self.fixed_input_size = fixed_input_size
        self.batches: list[torch.Tensor] = []

    def infer_impl(self, batch: torch.Tensor):
        self.batches.append(batch)
        n = batch.shape[0]
        return tuple(torch.from_numpy(self.reference[key]).expand(n, -1, -1)
                     for key in ("loc_640", "conf_640", "landms_640"))


@pytest.fixture
def replay_backend(crowd_reference):
    return ReplayBackend(crowd_reference)


@pytest.fixture(scope="session")
def crowd_image(shared_dir) -> np.ndarray:
    import cv2

    return cv2.imread(str(shared_dir / "images" / "crowd_1024x624.jpg"))


@pytest.fixture(scope="session")
def crop_folder(tmp_path_factory, shared_dir):
    """20 crops (96×128) of the crowd photo, 4 of them in a subfolder, and a text file: calibration images that
    run fast (``--calibration-count`` up to 20)."""
    import cv2

    image = cv2.imread(str(shared_dir / "images" / "crowd_1024x624.jpg"))
    folder = tmp_path_factory.mktemp("calibration")
    (folder / "sub").mkdir()
    for i in range(20):
        y, x = (i * 23) % 500, (i * 41) % 880
        cv2.imwrite(str(folder / ("sub" if i % 5 == 0 else ".") / f"crop{i:02d}.jpg"), image[y:y + 96, x:x + 128])
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="session")
def crop_calibration(crop_folder, mnet_pth, tmp_path_factory):
    """One calibration of 16 of the crops at their own size, computed once per session (a few seconds):
    (Int8Settings with its cache file, QuantizationPlan, the cache's text). Copy the text to use the cache."""
    from network.config import MOBILENET_0_25
    from runtime import calibration as cal
    from runtime.calibration import Int8Settings
    from wts_export.weights import load_weights

    config = Int8Settings(crop_folder, count=16, resize="original",
                          cache=tmp_path_factory.mktemp("cache") / "calibration.json")
    plan = cal.quantization_plan(mnet_pth, load_weights(mnet_pth), MOBILENET_0_25, config, report=lambda _: None)
    return config, plan, config.cache.read_text()


@pytest.fixture
def photos(tmp_path, shared_dir):
    """The four shared photos in a folder of their own (sorted: astronaut, children, crowd, selfie)."""
    import shutil

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((shared_dir / "images").iterdir()):
        shutil.copy(path, folder / path.name)
    return folder
