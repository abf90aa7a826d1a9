"""``retinaface-trt export-triton --engine E | --weights W -o REPO``: a Triton Inference Server model repository.

The ensemble ``retinaface`` takes encoded image bytes and returns boxes, scores, landmarks and a count;
its network is a TensorRT plan (``--engine``, or ``--weights`` with ``--backend tensorrt``, built here) or,
for machines without TensorRT, the executor (``--weights``, ``--backend auto|torch``) or ONNX Runtime
(``--backend onnxruntime``) in Triton's Python backend, on GPU instances with ``--device cuda``. Written
atomically; see docs/serving.md.
"""

from __future__ import annotations

from runtime.cli import options



def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export-triton", help="write a Triton model repository (ensemble of pre, network, post)",
                              description=options.description(__doc__))
    options.add_model_args(p)
    p.add_argument("-o", "--output", required=True, metavar="REPO", help="the repository folder to write")
    options.add_pipeline_args(p, resize_default="letterbox")
    options.add_vis_threshold_arg(p, drawn=False)
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
    from runtime.options import DetectionOptions
    from runtime.serve.triton.repository import ExportOptions

    detection = DetectionOptions(args.confidence_threshold, args.top_k, args.nms_threshold, args.keep_top_k)
    return ExportOptions(resize=args.resize, input_size=args.input_size, detection=detection,
                         vis_threshold=args.vis_threshold, max_pixels=args.max_pixels, max_batch=args.max_batch,
                         max_delay_us=args.max_delay_ms * 1000, instances=args.instances, precision=args.precision)


def _instance_device(device: str) -> str:
    """``--device auto`` (every command's default): GPU instances where this machine has a GPU, else CPU ones."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(args) -> int:
    from runtime.serve.triton.repository import write_repository

    path = write_repository(args.output, engine=args.engine, weights=args.weights, options=export_options(args),
                            force=args.force, backend=args.backend, device=_instance_device(args.device),
                            engine_cache=args.engine_cache)
    route = "TensorRT plan" if args.engine or args.backend == "tensorrt" else "Python backend"
    print(f"wrote Triton model repository {path} ({route}); serve it with: tritonserver --model-repository "
          f"{path}")
    return 0
