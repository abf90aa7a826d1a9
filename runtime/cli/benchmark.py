"""``retinaface-trt benchmark``: model-only latency and throughput, and end-to-end time per image, per backend.

Prints the method (warm-up, repeats, timer, statistic), the device, versions and one line per result;
``--json`` writes ``{"env": {...}, "rows": [...]}`` atomically (row fields: docs/benchmarks.md).
"""

from __future__ import annotations

import json
import sys

from retinaface_trt.errors import RetinaFaceError
from runtime.cli import options
from runtime.options import DEFAULT_INPUT_SIZE

BACKEND_CHOICES = ("fast", "torch", "onnxruntime", "tensorrt")



def add_parser(subparsers) -> None:
    p = subparsers.add_parser("benchmark", help="time the model and the whole pipeline per backend",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help=".pth or .wts weights")
    p.add_argument("--backend", action="append", choices=BACKEND_CHOICES,
                   help="repeatable (default: fast); fast = fused executor with the on-device pipeline")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    p.add_argument("--precision", action="append", choices=("fp32", "fp16"), help="repeatable (default fp32)")
    p.add_argument("--batch", type=int, help="throughput batch (default 128 on a GPU, 4 on the CPU)")
    p.add_argument("--input-size", type=options.size, default=DEFAULT_INPUT_SIZE, metavar="WxH",
                   help="network input (default 640x640)")
    p.add_argument("--image", action="append", metavar="PATH",
                   help="BGR test image(s), repeatable (default: a synthetic 1024x624 image)")
    p.add_argument("--baseline", action="store_true", help="also time the PyTorch model + CPU detect.py pipeline")
    p.add_argument("--warmup", type=int, help="untimed calls first (default 20 GPU, 3 CPU)")
    p.add_argument("--repeats", type=int, help="timed calls (default 100 GPU, 10 CPU)")
    p.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's)")
    p.add_argument("--json", dest="json_path", metavar="OUT.json", help="write env and rows as JSON")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.set_defaults(run=run)


def run(args) -> int:
    import torch

    from retinaface_trt.fileio import check_writable, write_text_atomic
    from runtime.backends import resolve_device
    from runtime.benchmark.run import BenchmarkConfig, run_benchmark

    if args.json_path:
        check_writable(args.json_path, args.force)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    config = BenchmarkConfig(
        weights=args.weights, device=device, backends=tuple(args.backend or ["fast"]),
        precisions=tuple(args.precision or ["fp32"]), batch=_positive(args.batch or (128 if gpu else 4), "--batch"),
        input_size=args.input_size, images=tuple(args.image or ()), baseline=args.baseline,
        warmup=_positive(args.warmup if args.warmup is not None else (20 if gpu else 3), "--warmup", zero=True),
        repeats=_positive(args.repeats if args.repeats is not None else (100 if gpu else 10), "--repeats"))
    env, rows = run_benchmark(config, report=lambda line: print(line, flush=True))
    if args.json_path:
        text = json.dumps({"env": env, "rows": [r.as_dict() for r in rows]}, indent=1)
        write_text_atomic(args.json_path, text + "\n", force=args.force)
        print(f"wrote {args.json_path}", file=sys.stderr)
    return 0


def _positive(value: int, flag: str, zero: bool = False) -> int:
    if value < (0 if zero else 1):
        raise RetinaFaceError(f"{flag} must be {'≥ 0' if zero else '≥ 1'}, got {value}")
    return value
