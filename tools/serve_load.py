"""The load figure of docs/serving.md: requests/s and p50/p99 latency of `retinaface-trt serve` at 1, 4 and 16
concurrent clients (a closed loop: each client sends its next request when the previous one is answered).

Starts the server itself (a child process on a free port of 127.0.0.1, with the serve flags given after
``--``) unless ``--url`` names a running one, sends ``--warmup`` requests, then each level's ``--requests``.

Usage:
    python tools/serve_load.py [--image IMG] [--requests 60] [--clients 1,4,16] [--client asyncio|threads]
        [--base64-json] [--check-sdk] [--json OUT] -- SERVE_FLAGS...
    python tools/serve_load.py --url http://127.0.0.1:8000 [...]
Example (the figure in docs/serving.md):
    python tools/serve_load.py --image ../shared/images/crowd_1024x624.jpg -- \\
        --weights weights/mobilenet0.25_Final.pth --resize stretch --input-size 640x640
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from runtime.serve.load import ServerProcess, markdown_table, run_level

MEDIA = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=Path("../shared/images/crowd_1024x624.jpg"))
    parser.add_argument("--requests", type=int, default=60, help="requests per level (default 60)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed requests first (default 4)")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated levels (default 1,4,16)")
    parser.add_argument("--url", help="a running server (default: start one with the flags after --)")
    parser.add_argument("--client", choices=("asyncio", "threads"), default="asyncio",
                        help="asyncio: one connection per client on one asyncio loop (default); threads: httpx, one "
                             "thread per client")
    parser.add_argument("--base64-json", action="store_true",
                        help='post {"image": "<base64>"} as application/json instead of the image bytes')
    parser.add_argument("--check-sdk", action="store_true",
                        help="count an answer as failed unless it is the SDK's record for the image up to the "
                             "precision's rounding (runtime.serve.load.same_answer; the SDK built in this process "
                             "with the serve flags' --weights, --device, --backend, --precision, --resize, "
                             "--input-size and --vis-threshold)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("serve", nargs="*", help="flags of `retinaface-trt serve` (after --)")
    return parser.parse_args(argv)


def measure(url: str, args) -> list:
    from runtime.serve.load import run_level_asyncio

    body, kind = args.image.read_bytes(), MEDIA[args.image.suffix.lower()]
    if args.base64_json:
        import base64

        body, kind = json.dumps({"image": base64.b64encode(body).decode()}).encode(), "application/json"
    check = sdk_check(args) if args.check_sdk else None
    level = run_level_asyncio if args.client == "asyncio" else run_level
    options = {"check": check} if check else {}
    level(f"{url}/v1/detect", body, kind, clients=1, requests=args.warmup, **options)
    results = []
    for clients in (int(c) for c in args.clients.split(",")):
        result = level(f"{url}/v1/detect", body, kind, clients=clients, requests=args.requests, **options)
        print(f"{clients:>3} clients: {result.requests_per_s:6.2f} requests/s, p50 {result.p50_ms:6.0f} ms, "
              f"p99 {result.p99_ms:6.0f} ms, {result.failed} failed", file=sys.stderr, flush=True)
        results.append(result)
    return results


def sdk_check(args):
    """``check(status, answer)``: the answer's record is ``Engine.infer``'s of the image (the serve flags' model
    and pipeline options) up to the rounding of the precision (:func:`runtime.serve.load.same_answer`)."""
    import base64

    from runtime import Engine
    from runtime.face import DEFAULT_VIS_THRESHOLD
    from runtime.serve.load import same_answer

    flags = argparse.ArgumentParser(add_help=False)
    for name in ("--weights", "--device", "--backend", "--precision", "--resize"):
        flags.add_argument(name)
    flags.add_argument("--input-size", type=lambda t: tuple(int(v) for v in t.split("x")))
    flags.add_argument("--vis-threshold", type=float)
    known, _ = flags.parse_known_args(args.serve)
    options = {key: value for key, value in vars(known).items() if value is not None}
    with Engine(decoder="cv2", **options) as engine:
        want = json.loads(engine.infer(base64.b64encode(args.image.read_bytes()).decode()))
    precision, vis = options.get("precision", "fp32"), options.get("vis_threshold", DEFAULT_VIS_THRESHOLD)
    return lambda status, data: status == 200 and same_answer(json.loads(data), want, precision, vis)


def main(argv=None) -> int:
    args = parse(argv)
    if args.url:
        results = measure(args.url.rstrip("/"), args)
    else:
        with ServerProcess(args.serve) as server:
            server.wait_ready()
            results = measure(server.url, args)
    print(markdown_table(results))
    if args.json:
        env = {"machine": platform.machine(), "python": platform.python_version(), "image": str(args.image),
               "serve": args.serve, "requests_per_level": args.requests}
        args.json.write_text(json.dumps({"env": env, "rows": [r.to_dict() for r in results]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
