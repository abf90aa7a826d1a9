"""``detect`` over a Ray cluster: the images of any number of hosts' GPUs, detect's records in one JSON Lines file.

    pip install '.[ray]'                                   # on every host, with the same checkout and weights
    ray start --head                                       # on the first host
    ray start --address HEAD:6379                          # on each other host
    retinaface-trt build weights/mobilenet0.25_Final.pth -o /shared/mnet-fp16.engine --precision fp16
    python tools/ray_detect.py --address auto --images /shared/photos --out faces.jsonl \\
        --engine /shared/mnet-fp16.engine --backend tensorrt --resize stretch --actors 16 --num-gpus 1

One actor per GPU (``--actors`` = the GPUs of the cluster, ``--num-gpus 1``); on machines without GPUs,
``--num-gpus 0 --device cpu``. The images must be readable by every host (a shared folder, or an object store URL
that ``ray.data.read_binary_files`` reads). See docs/scaling.md ("Beyond one host") and
:mod:`runtime.jobs.ray_data`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, nargs="+", help="folders, files or URLs of images")
    parser.add_argument("--out", required=True, help="the JSON Lines file of records (written at the end)")
    parser.add_argument("--address", default=None, help="the Ray cluster (auto: the one this host joined; "
                                                        "default: a local Ray)")
    parser.add_argument("--weights")
    parser.add_argument("--engine")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--device", default="auto", help="the actors' device (auto: their GPU)")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--resize", default="original")
    parser.add_argument("--actors", type=int, default=1, help="actors, one per GPU to use (default 1)")
    parser.add_argument("--num-gpus", type=float, default=1.0, help="GPUs per actor (default 1; 0 on CPUs)")
    parser.add_argument("--batch", type=int, default=8, help="images per detector call (default 8)")
    parser.add_argument("--read-threads", type=int, default=2, help="decoding threads and CPUs per actor")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from retinaface_trt.errors import RetinaFaceError
    from runtime.jobs.ray_data import detect_dataset, import_ray, write_records

    args = parse(argv)
    try:
        ray = import_ray()
        ray.init(address=args.address, ignore_reinit_error=True)
        records = detect_dataset(args.images, actors=args.actors, num_gpus=args.num_gpus, batch=args.batch,
                                 read_threads=args.read_threads, weights=args.weights, engine=args.engine,
                                 backend=args.backend, device=args.device, precision=args.precision,
                                 resize=args.resize)
        count = write_records(records, args.out, force=args.force)
    except RetinaFaceError as error:
        print(f"ray_detect: error: {error}", file=sys.stderr)
        return 1
    print(f"{count} records in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
