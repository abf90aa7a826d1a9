"""The weights a selftest proves engines of: the user's checkpoint, or seeded random weights of both backbones."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from network.config import BACKBONES
from retinaface_trt.errors import RetinaFaceError

SEED = 0


@dataclass
class Model:
    """One set of weights: ``cfg`` (:class:`network.config.RetinaFaceConfig`), ``arrays`` ({state_dict name:
    float32 array}), their ``sha256`` (of the file, or of the arrays for random weights), ``source`` (what a
    reader of the report needs to reproduce them) and ``random`` (True for seeded random weights)."""

    cfg: object
    arrays: dict
    sha256: str
    source: str
    random: bool
    _onnx: bytes | None = field(default=None, repr=False)

    def onnx_bytes(self) -> bytes:
        """The weights exported to ONNX with dynamic N, H, W (opset 17, with the backbone metadata); cached."""
        if self._onnx is None:
            from wts_export.onnx_export import finish_model, onnx_bytes, torch_model

            data = onnx_bytes(torch_model(self.arrays), dynamic=True)
            self._onnx = finish_model(data, self.cfg.name, self.sha256).SerializeToString()
        return self._onnx

    def describe(self) -> dict:
        return {"backbone": self.cfg.name, "source": self.source, "sha256": self.sha256, "random": self.random}


def load_models(weights: str | Path | None = None, backbones=BACKBONES, seed: int = SEED) -> list[Model]:
    """[the checkpoint ``weights`` (.pth/.wts)], or seeded random weights of each of ``backbones`` when None."""
    from network.config import config_for_weights

    if weights is None:
        return [random_model(backbone, seed) for backbone in backbones]
    path = Path(weights)
    if not path.is_file():
        raise RetinaFaceError(f"--weights {path} is not a file; pass a .pth or .wts checkpoint, or leave "
                              "--weights out to test with seeded random weights")
    from wts_export.weights import load_weights, sha256_file

    arrays = load_weights(path)
    return [Model(config_for_weights(arrays), arrays, sha256_file(path), str(path), random=False)]


@functools.lru_cache(maxsize=4)
def random_model(backbone: str, seed: int = SEED) -> Model:
    """Seeded random weights of ``backbone`` (:mod:`wts_export.random_weights`); made once per process
    (a ResNet-50 takes seconds to calibrate), so the arrays are shared: do not modify them."""
    from network.config import get_config
    from wts_export.random_weights import random_weights

    _, arrays = random_weights(backbone, seed)
    return Model(get_config(backbone), arrays, arrays_sha256(arrays),
                 f"random weights (wts_export.random_weights, seed {seed})", random=True)


def arrays_sha256(arrays: dict) -> str:
    """sha256 over every name and array (dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        digest.update(f"{name} {array.dtype} {array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
