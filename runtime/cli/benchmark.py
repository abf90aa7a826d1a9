"""``retinaface-trt benchmark``: time what users run, per backend and precision, with the method printed.

Rows: the network alone (batch 1 and N), ``Detector.detect`` of a host image (original size and stretched),
the SDK's ``Engine.infer`` of a base64 file, batches already on the device and from the host, and the pinned
copy bound; ``--baseline`` adds the original-style pipeline and ``--compile-reference`` the PyTorch model under
``torch.compile``, in the same run. ``--json`` writes ``{"env", "rows", "failures"}`` (docs/benchmarks.md).
A backend that fails is reported and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import json
import sys

from runtime.backends import BACKENDS, FLOAT_PRECISIONS
from runtime.cli import options
from runtime.options import DEFAULT_INPUT_SIZE


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("benchmark", help="time the model, the pipeline and the SDK per backend",
                              description=options.description(__doc__))
    p.add_argument("--weights", required=True, help=".pth or .wts weights")
    p.add_argument("--backend", action="append", choices=BACKENDS,
                   help="repeatable (default: auto, the backend detect would use)")
    options.add_device_arg(p)
    p.add_argument("--precision", action="append", choices=FLOAT_PRECISIONS,
                   help="repeatable (default fp32; INT8 is measured by evaluate: docs/int8.md)")
    p.add_argument("--batch", type=options.count, help="throughput batch (default 128 on a GPU, 4 on the CPU)")
    p.add_argument("--input-size", type=options.size, default=DEFAULT_INPUT_SIZE, metavar="WxH",
                   help="network input of the stretched rows (default 640x640)")
    p.add_argument("--image", action="append", metavar="PATH",
                   help="test image(s), repeatable (default: a synthetic 1024x624 image with few faces)")
    p.add_argument("--baseline", action="store_true",
                   help="also time the PyTorch model with detect.py-style CPU post-processing")
    p.add_argument("--compile-reference", action="store_true",
                   help="also time the PyTorch model under torch.compile (GPU; compiling takes minutes)")
    p.add_argument("--layer-times", action="store_true",
                   help="TensorRT engines: also print the time of each layer (TensorRT's profiler)")
    p.add_argument("--warmup", type=options.count_or_zero, help="untimed calls first (default 20 GPU, 3 CPU)")
    p.add_argument("--repeats", type=options.count, help="timed calls (default 100 GPU, 10 CPU)")
    p.add_argument("--threads", type=options.count, help="CPU threads for PyTorch and ONNX Runtime (default: one per core)")
    options.add_json_arg(p, "env, rows and failures")
    p.set_defaults(run=run)


def run(args) -> int:
    import torch

    from retinaface_trt.fileio import write_text_atomic
    from runtime.device import resolve_device
    from runtime.benchmark.run import BenchmarkConfig, run_benchmark

    options.check_json_path(args)
    if args.threads:
        torch.set_num_threads(args.threads)       # also for the baseline, which builds no backend
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    config = BenchmarkConfig(
        weights=args.weights, device=device, backends=tuple(args.backend or ["auto"]),
        precisions=tuple(args.precision or ["fp32"]), batch=args.batch or (128 if gpu else 4),
        input_size=args.input_size, images=tuple(args.image or ()), baseline=args.baseline,
        compile_reference=args.compile_reference, layer_times=args.layer_times, threads=args.threads,
        warmup=args.warmup if args.warmup is not None else (20 if gpu else 3),
        repeats=args.repeats or (100 if gpu else 10))
    lines = sys.stderr if args.json_path and options.is_stdout(args.json_path) else sys.stdout   # JSON alone there
    result = run_benchmark(config, report=lambda line: print(line, file=lines, flush=True))
    if args.json_path:
        text = json.dumps({"env": result.env, "rows": [r.as_dict() for r in result.rows],
                           "failures": result.failures, "layers": result.layers}, indent=1)
        write_text_atomic(args.json_path, text + "\n", force=args.force)
        if not options.is_stdout(args.json_path):
            print(f"wrote {args.json_path}", file=sys.stderr)
    for failure in result.failures:
        print(f"retinaface-trt benchmark: {failure}", file=sys.stderr)
    return 1 if result.failures else 0
