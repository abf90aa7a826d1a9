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
from runtime.options import DECODERS, DEFAULT_INPUT_SIZE, RESIZE_POLICIES


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
    folder = p.add_argument_group("a folder (instead of the rows above)")
    folder.add_argument("--folder", nargs="+", metavar="INPUT",
                        help="image files, folders or globs, as detect takes them: time detect's pipeline over them "
                             "beside the decode-only throughput of the same files (same decoder, threads and pixel "
                             "budget; docs/benchmarks.md)")
    folder.add_argument("--resize", default="stretch", choices=RESIZE_POLICIES,
                        help="resize policy of the --folder pass (default stretch, to --input-size)")
    folder.add_argument("--read-threads", type=options.count, metavar="N",
                        help="decoding threads (default: as detect, the CPUs this process may use, at most 32)")
    folder.add_argument("--pixel-budget", type=options.count, default=None, metavar="MP",
                        help="megapixels decoded at once (default: this machine's, as detect)")
    folder.add_argument("--decoder", choices=DECODERS, default="auto",
                        help="JPEG decoder of both passes, as detect's --decoder (default auto)")
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
    if args.folder:
        return _folder(args, device)
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


def _folder(args, device) -> int:
    """``--folder``: per backend and precision, the decode-only pass and detect's pipeline over the same files."""
    import os
    import platform

    import torch

    from retinaface_trt.errors import RetinaFaceError
    from retinaface_trt.fileio import write_text_atomic
    from runtime.benchmark.folder import folder_benchmark
    from runtime.cli.detect import expand_inputs
    from runtime.detector import Detector
    from runtime.jobs.tasks import JobSettings, default_read_threads

    paths = [path for path, error in expand_inputs(args.folder) if error is None]
    if not paths:
        raise RetinaFaceError(f"--folder {' '.join(args.folder)}: no image files there")
    gpu = device.type == "cuda"
    from runtime.budget import pixel_budget

    budget = args.pixel_budget * 1_000_000 if args.pixel_budget else pixel_budget(device)
    settings = JobSettings(batch=args.batch or (128 if gpu else 4), read_threads=args.read_threads or
                           default_read_threads(), pixel_budget=budget, decoder=args.decoder)
    warmup = min(len(paths), args.warmup if args.warmup is not None else 2 * settings.batch)
    size = "" if args.resize == "original" else " {}x{}".format(*args.input_size)
    print(f"method: {len(paths)} inputs; untimed pass over the first {warmup}; then decode only (reader, "
          f"{settings.read_threads} threads, decoder {args.decoder} as each row says, {budget / 1e6:.0f} MP budget) and detect's pipeline "
          f"(same reader, batch {settings.batch}, resize {args.resize}{size}, JSON records); wall clock "
          f"(time.perf_counter); device {torch.cuda.get_device_name(device) if gpu else platform.processor() or 'cpu'}"
          f", {os.cpu_count()} CPUs", flush=True)
    rows, failures = [], []
    for backend in args.backend or ["auto"]:
        for precision in args.precision or ["fp32"]:
            try:
                with Detector.from_options(weights=args.weights, backend=backend, device=str(device),
                                           precision=precision, threads=args.threads, resize=args.resize,
                                           input_size=args.input_size) as detector:
                    result = folder_benchmark(detector, paths, settings, warmup)
            except (RetinaFaceError, RuntimeError, ImportError) as error:
                failures.append(f"{backend} {precision}: {str(error).splitlines()[0]}")
                continue
            row = {"backend": backend, "precision": precision, "resize": args.resize, **result.as_dict()}
            rows.append(row)
            print(f"{backend:11} {precision}  {row['decoder']:6}  decode {row['decode_images_per_s']:.1f} images/s  detect "
                  f"{row['detect_images_per_s']:.1f} images/s  ratio {row['ratio']:.2f}  ({row['images']} images, "
                  f"{row['faces']} faces, {row['failed']} failed, peak {row['peak_decoded_megapixels']} MP decoded)",
                  flush=True)
    if args.json_path:
        write_text_atomic(args.json_path, json.dumps({"rows": rows, "failures": failures}, indent=1) + "\n",
                          force=args.force)
    for failure in failures:
        print(f"retinaface-trt benchmark: {failure}", file=sys.stderr)
    return 1 if failures else 0
