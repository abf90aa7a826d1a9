"""Run the Triton NMS kernels under Triton's CPU interpreter, in a process of their own.

    python -m tests.runtime.triton_interpreted IN.npz OUT.npz

IN holds cases ``<name>.boxes`` [N, K, 4], ``<name>.counts`` [N], ``<name>.threshold`` (NMS only), and
optionally ``strategy.loc/conf/landms/priors/top_k`` (the whole fixed-shape post-processing). OUT holds
``<name>.keep`` [N, K] and ``strategy.dets`` / ``strategy.counts``. A separate process because the
interpreter patches ``triton.language`` for the process it runs in.
"""

import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from runtime import _nms_triton, postprocess  # noqa: E402
from retinaface_trt.thresholds import Thresholds  # noqa: E402


def main(source: str, target: str) -> None:
    data = dict(np.load(source))
    results = {}
    for name in {key.split(".")[0] for key in data if key.endswith(".boxes")}:
        keep = _nms_triton.nms_sorted(torch.from_numpy(data[f"{name}.boxes"]),
                                      torch.from_numpy(data[f"{name}.counts"]), float(data[f"{name}.threshold"]))
        results[f"{name}.keep"] = keep.numpy()
    if "strategy.loc" in data:
        postprocess.nms_sorted = _nms_triton.nms_sorted       # the device strategy, on CPU tensors
        tensors = [torch.from_numpy(data[f"strategy.{k}"]) for k in ("loc", "conf", "landms", "priors")]
        options = Thresholds(top_k=int(data["strategy.top_k"]))
        dets, counts = postprocess._detect_device(*tensors, 640, 640, options, (0.1, 0.2))
        results.update({"strategy.dets": dets.numpy(), "strategy.counts": counts.numpy()})
    np.savez(target, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
