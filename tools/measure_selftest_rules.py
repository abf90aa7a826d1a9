"""Why the selftest judges fp16 as it does (docs/tensorrt.md, "Run selftest first"): on the selftest's inputs,
a correct float16 network (the strongly typed half graph TensorRT 10/11 get, on the executor) against the
float32 reference, for the published checkpoint and for seeded random weights — faces matched after NMS and
candidates agreeing before it; and a second float32 implementation (BatchNorm folded) for the fp32 margins.

    python tools/measure_selftest_rules.py [WEIGHTS.pth]     (default $RETINAFACE_SHARED/weights/mobilenet0.25_Final.pth)

CPU only (float16 convolutions on a CPU are slow: a few minutes).
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # the repository root, when not installed

from network import INPUT_NAME, OUTPUT_NAMES, populate_network  # noqa: E402
from network.executor import Program, trt  # noqa: E402
from runtime.compare import output_errors  # noqa: E402
from runtime.priors import prior_tensor  # noqa: E402
from runtime.selftest.inputs import network_batch  # noqa: E402
from runtime.selftest.measure import candidate_agreement, decoded_rows, face_agreement, pipeline  # noqa: E402
from runtime.selftest.model import load_models, random_model  # noqa: E402

SHARED = Path(os.environ.get("RETINAFACE_SHARED", REPO.parent / "shared"))   # as the tests find it
CHECKPOINT = SHARED / "weights" / "mobilenet0.25_Final.pth"


def network_run(model, half: bool = False, **options):
    network = trt.Builder(trt.Logger()).create_network(0)
    store = populate_network(trt, network, model.arrays, model.cfg, input_shape=(-1, 3, -1, -1), half=half)
    program = Program(network, **options)
    return lambda x: (store, tuple(program({INPUT_NAME: x})[n] for n in OUTPUT_NAMES))[1]


def measure(label: str, model, shape) -> None:
    n, h, w = shape
    x = network_batch(n, h, w)
    reference = network_run(model)(x)
    rows = lambda outputs: decoded_rows(outputs, prior_tensor(model.cfg, h, w), w, h, model.cfg.variance)  # noqa: E731
    for variant, run in (("fp32, folded", network_run(model, fold_batchnorm=True)), ("fp16 graph", network_run(model, half=True))):
        outputs = run(x)
        errors = output_errors(outputs, reference)[0]
        faces = face_agreement(pipeline(outputs, model.cfg, h, w)[0], pipeline(reference, model.cfg, h, w)[0])
        candidates = candidate_agreement(rows(outputs), rows(reference))
        print(f"| {label} | {n}×{h}×{w} | {variant} | " + " / ".join(f"{errors[k]:.1e}" for k in OUTPUT_NAMES)
              + f" | {faces.reference} / {faces.engine}, {faces.ratio:.1%} | {candidates.compared}, {candidates.ratio:.1%} |",
              flush=True)


def main() -> None:
    weights = Path(sys.argv[1]) if len(sys.argv) > 1 else CHECKPOINT
    print("| weights | input | network | max abs loc / conf / landms | faces (reference / other), matched | "
          "candidates, agreeing |\n| --- | --- | --- | --- | --- | --- |")
    measure(weights.name, load_models(weights)[0], (2, 640, 640))
    for seed in (0, 1):
        measure(f"random MobileNet-0.25, seed {seed}", random_model("mobilenet0.25", seed), (2, 640, 640))
    measure("random ResNet-50, seed 0", random_model("resnet50", 0), (1, 328, 200))


if __name__ == "__main__":
    main()
