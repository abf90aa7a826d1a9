"""Where the time of the pipeline goes on a CUDA GPU: stage timings and kernel profiles, for docs/benchmarks.md.

    python tools/profile_pipeline.py WEIGHTS IMAGE OUT_DIR [--batch 128]

For fp32 and fp16, original size and stretch: ``Detector.detect`` with and without CUDA graphs, the upload, and
the detection stage alone (medians of 50 calls after 10); then a uint8 batch on the device. Writes
``stages.json`` and torch.profiler tables (``profile_*.txt``) of the eager chain into OUT_DIR.
"""

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from runtime.backends.executor import ExecutorBackend
from runtime.detector import Detector


def median_ms(fn, calls: int = 50, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def kernel_table(fn, path: Path, calls: int = 5) -> None:
    fn()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    path.write_text(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40))


def stages(backend, image, resize: str) -> dict:
    graphed, eager = Detector(backend, resize=resize), Detector(backend, resize=resize, cuda_graphs=False)
    canvas = graphed._upload([image])
    if graphed.resize != "original":
        canvas = graphed._stage("place", graphed._placed, canvas)
    return {"detect_ms": median_ms(lambda: graphed.detect(image)),
            "detect_arrays_ms": median_ms(lambda: graphed.detect_arrays([image])),
            "eager_detect_ms": median_ms(lambda: eager.detect(image)),
            "upload_ms": median_ms(lambda: graphed._upload([image])),
            "detect_stage_ms": median_ms(lambda: graphed._stage("detect", graphed._detected, canvas))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights")
    parser.add_argument("image")
    parser.add_argument("out", type=Path)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    image = cv2.imread(args.image)
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for precision in ("fp32", "fp16"):
        backend = ExecutorBackend(args.weights, device="cuda", precision=precision)
        for resize in ("original", "stretch"):
            report[f"{precision}-{resize}"] = stages(backend, image, resize)
        batch = torch.from_numpy(np.stack([image] * args.batch)).cuda()
        graphed, eager = Detector(backend, resize="stretch"), Detector(backend, resize="stretch", cuda_graphs=False)
        report[f"{precision}-batch{args.batch}"] = {"ms": median_ms(lambda: graphed.detect_arrays(batch), 20, 5),
                                                    "eager_ms": median_ms(lambda: eager.detect_arrays(batch), 10, 3)}
        kernel_table(lambda: eager.detect(image), args.out / f"profile_detect_{precision}.txt")
        kernel_table(lambda: eager.detect_arrays(batch), args.out / f"profile_batch_{precision}.txt", calls=3)
        backend.close()
    (args.out / "stages.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
