"""``retinaface-trt export-triton --engine E | --weights W -o REPO``: a Triton Inference Server model repository.

The ensemble ``retinaface`` takes encoded image bytes and returns boxes, scores, landmarks and a count;
its network is a TensorRT plan (``--engine``, or ``--weights`` with ``--backend tensorrt``, built here) or,
for machines without TensorRT, the executor (``--weights``, ``--backend auto|torch``) or ONNX Runtime
(``--backend onnxruntime``) in Triton's Python backend, on GPU instances with ``--device cuda``. Written
atomically; see docs/serving.md.
"""

from __future__ import annotations

from runtime.cli import options



MODEL = options.ModelFlags()
PIPELINE = options.PipelineFlags(resize_default="letterbox")
VIS = options.VisThresholdFlag(drawn=False)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export-triton", help="write a Triton model repository (ensemble of pre, network, post)",
                              description=options.description(__doc__))
    MODEL.add(p)
    p.add_argument("-o", "--output", required=True, metavar="REPO", help="the repository folder to write")
    PIPELINE.add(p)
    VIS.add(p)
    triton = p.add_argument_group("triton")
    triton.add_argument("--max-batch", type=options.count,
                        help="max_batch_size of every model (default: the engine's largest batch; 16 with --weights)")
    triton.add_argument("--max-delay-ms", type=options.count_or_zero, default=2,
                        help="dynamic batching: wait this long for a fuller batch, in ms (default 2)")
    triton.add_argument("--instances", type=options.count, default=1,
                        help="instances of each model; of the network, on every GPU (default 1)")
    p.add_argument("--force", action="store_true", help="replace an existing repository")
    p.set_defaults(run=run)


def export_options(args):
    """The :class:`ExportOptions` given by the flags."""
    from runtime.serve.triton.repository import ExportOptions

    pipeline = PIPELINE.parse(args)
    return ExportOptions(resize=pipeline.resize, input_size=pipeline.input_size, detection=pipeline.thresholds,
                         vis_threshold=VIS.parse(args), max_pixels=args.max_pixels, max_batch=args.max_batch,
                         max_delay_us=args.max_delay_ms * 1000, instances=args.instances, precision=args.precision)


def _instance_device(device: str) -> str:
    """``--device auto`` (every command's default): GPU instances where this machine has a GPU, else CPU ones."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(args) -> int:
    from runtime.serve.triton.repository import write_repository

    model = MODEL.parse(args)
    path = write_repository(args.output, engine=model.engine, weights=model.weights, options=export_options(args),
                            force=args.force, backend=model.backend, device=_instance_device(model.device),
                            engine_cache=model.engine_cache)
    route = "TensorRT plan" if model.engine or model.backend == "tensorrt" else "Python backend"
    print(f"wrote Triton model repository {path} ({route}); serve it with: tritonserver --model-repository "
          f"{path}")
    return 0
