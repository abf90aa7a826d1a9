"""Device-side checks for docs/benchmarks.md: fp16 vs fp32 agreement, a kernel profile, torch.compile trial.

Usage: python tools/speed_device_checks.py WEIGHTS IMAGES_DIR OUT_DIR [--compile]
"""

import glob
import json
import sys
import time

import cv2
import numpy as np
import torch

from network.fast_runner import FastExecutorModel
from runtime.gpu_pipeline import FastDetector


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def agreement(weights, images, device):
    detectors = {p: FastDetector(FastExecutorModel.from_weights(weights, device=device, precision=p))
                 for p in ("fp32", "fp16")}
    report, total, matched = {}, 0, 0
    for path in images:
        image = cv2.imread(path)
        ref = [f for f in detectors["fp32"].detect(image) if f.score >= 0.5]
        half = detectors["fp16"].detect(image)
        hits = sum(any(iou(f.box, g.box) >= 0.9 for g in half) for f in ref)
        report[path.split("/")[-1]] = {"fp32_faces_ge_0.5": len(ref), "matched_iou_ge_0.9": hits}
        total, matched = total + len(ref), matched + hits
    report["total"] = {"faces": total, "matched": matched, "rate": matched / max(total, 1)}
    return report


def profile(weights, device, batch, out):
    model = FastExecutorModel.from_weights(weights, device=device, precision="fp16", cuda_graph=False)
    x = torch.randn(batch, 3, 640, 640, device=device) * 50
    for _ in range(5):
        model(x)
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile as prof
    with prof(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(5):
            model(x)
        torch.cuda.synchronize()
    with open(out, "w") as f:
        f.write(p.key_averages().table(sort_by="cuda_time_total", row_limit=25))


def compile_trial(weights, device, batches):
    model = FastExecutorModel.from_weights(weights, device=device, precision="fp16", cuda_graph=False)
    compiled = torch.compile(model.forward, mode="reduce-overhead")
    result = {}
    for batch in batches:
        x = torch.randn(batch, 3, 640, 640, device=device) * 50
        start = time.perf_counter()
        for _ in range(3):
            compiled(x)
        torch.cuda.synchronize()
        result[f"compile_s_batch{batch}"] = time.perf_counter() - start
        times = []
        for _ in range(50):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); compiled(x); e.record(); e.synchronize()
            times.append(s.elapsed_time(e))
        result[f"median_ms_batch{batch}"] = float(np.median(times))
    return result


if __name__ == "__main__":
    weights, folder, out = sys.argv[1:4]
    images = sorted(glob.glob(folder + "/*"))
    json.dump(agreement(weights, images, "cuda"), open(out + "/agreement.json", "w"), indent=1)
    profile(weights, "cuda", 128, out + "/profile_b128.txt")
    if "--compile" in sys.argv:
        json.dump(compile_trial(weights, "cuda", (1, 128)), open(out + "/compile.json", "w"), indent=1)
