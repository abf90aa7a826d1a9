"""A Triton Inference Server model repository for RetinaFace (``retinaface-trt export-triton``).

Four models, joined by the ensemble that clients call::

    retinaface (ensemble)   IMAGE: encoded image bytes (TYPE_STRING [1])
      ├─ retinaface_pre     Python backend: cv2.imdecode → resize (stretch | letterbox) → minus mean
      │                     → input FP32 [3, H, W], TRANSFORM FP64 [4] (scale x, y, offset x, y)
      ├─ retinaface_net     the network: a TensorRT plan (tensorrt_plan), or the project's executor in the
      │                     Python backend → loc [P, 4], conf [P, 2], landms [P, 10]
      └─ retinaface_post    Python backend: priors, decode, NMS (the runtime's), vis threshold, back to
                            original pixels → BOXES FP32 [D, 4] (x1, y1, x2, y2), SCORES FP32 [D],
                            LANDMARKS FP32 [D, 10] (five x, y), COUNT INT32 [1]

Every model has dynamic batching (``max_batch_size`` > 0: the shapes above get a leading batch
dimension). Within a batch, rows of BOXES / SCORES / LANDMARKS past an image's COUNT are zero padding.
The network's tensor names are the project's (:data:`network.INPUT_NAME`, :data:`network.OUTPUT_NAMES`).
The Python models import this project: it must be installed in the Python environment of Triton's Python
backend (``tools/install_triton.sh`` does it for the local server). See docs/serving.md.
"""

ENSEMBLE = "retinaface"
PRE = "retinaface_pre"
NET = "retinaface_net"
POST = "retinaface_post"

IMAGE = "IMAGE"
TRANSFORM = "TRANSFORM"
BOXES = "BOXES"
SCORES = "SCORES"
LANDMARKS = "LANDMARKS"
COUNT = "COUNT"
