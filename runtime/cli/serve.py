"""``retinaface-trt serve``: the SDK over HTTP (base64 JSON or image bytes in, the SDK's JSON record out).

Binds 127.0.0.1 unless ``--host`` says otherwise. A model problem (missing weights, a backend that is not
installed) or a port that cannot be bound stops the command before it listens: exit status 1. SIGINT or
SIGTERM stop it after the requests in flight are answered (exit status 0). See docs/serving.md.
"""

from __future__ import annotations

import argparse
import sys

from runtime.cli import options
from runtime.serve import settings as defaults

_SERVICE = defaults.ServeSettings()
DETECTOR = options.DetectorFlags(int8=False)
VIS = options.VisThresholdFlag(drawn=False)


_port = options.argparse_type(defaults.check_port, "port")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="HTTP service: base64 or image bytes in, the SDK's JSON out",
                              description=options.description(__doc__))
    DETECTOR.add(p)
    VIS.add(p)
    group = p.add_argument_group("service")
    group.add_argument("--host", default=defaults.DEFAULT_HOST,
                       help=f"address to listen on (default {defaults.DEFAULT_HOST}: this machine only)")
    group.add_argument("--port", type=_port, default=defaults.DEFAULT_PORT,
                       help=f"TCP port, 0 for any free one (default {defaults.DEFAULT_PORT})")
    group.add_argument("--workers", type=options.count, default=_SERVICE.workers, metavar="N",
                       help="processes serving on the one port, each with its own model (default 1; more where one "
                            "process's Python work, not the device, bounds it: docs/serving.md)")
    group.add_argument("--max-batch", type=options.count, default=_SERVICE.max_batch,
                       help=f"images per detect_batch call (default 1 on a CPU, {defaults.GPU_MAX_BATCH} on a GPU)")
    group.add_argument("--max-delay-ms", type=options.count_or_zero, default=_SERVICE.max_delay_ms,
                       help=f"wait this long for more requests to batch, in ms (default {_SERVICE.max_delay_ms})")
    group.add_argument("--max-queue", type=options.count, default=_SERVICE.max_queue,
                       help=f"requests in flight at once; more get 503 (default {_SERVICE.max_queue})")
    group.add_argument("--max-body-mib", type=options.count, default=_SERVICE.max_body_mib,
                       help=f"largest request body in MiB; larger get 413 (default {_SERVICE.max_body_mib})")
    group.add_argument("--shutdown-timeout", type=options.count_or_zero, default=_SERVICE.shutdown_timeout_s,
                       metavar="SECONDS", help="on SIGTERM, wait this long for requests in flight "
                                               f"(default {_SERVICE.shutdown_timeout_s}; 0: no limit)")
    group.add_argument("--header-timeout", type=options.count, default=_SERVICE.header_timeout_s,
                       metavar="SECONDS", help="close a connection that sent no complete request headers for this "
                                               f"long (default {_SERVICE.header_timeout_s})")
    group.add_argument("--body-timeout", type=options.count, default=_SERVICE.body_timeout_s, metavar="SECONDS",
                       help="answer 408 and close the connection when a request body has not arrived this long "
                            f"after its headers (default {_SERVICE.body_timeout_s})")
    p.set_defaults(run=run)


def serve_settings(args: argparse.Namespace) -> defaults.ServeSettings:
    """The :class:`ServeSettings` given by the service and pipeline flags."""
    detection = DETECTOR.pipeline.thresholds.parse(args)
    return defaults.ServeSettings(max_batch=args.max_batch,
                                  max_delay_ms=args.max_delay_ms,
                                  max_queue=args.max_queue, max_body_mib=args.max_body_mib,
                                  shutdown_timeout_s=args.shutdown_timeout, header_timeout_s=args.header_timeout,
                                  body_timeout_s=args.body_timeout, vis_threshold=VIS.parse(args),
                                  detection=detection, workers=args.workers)


def run(args) -> int:
    from runtime.serve import require

    require()
    settings = serve_settings(args)
    from runtime.serve.server import bind, url_of
    from runtime.serve.workers import Service, run_service, serve_workers

    sock = bind(args.host, args.port)   # before the model loads: a taken port fails at once

    def announce():
        workers = f"; {settings.workers} workers" if settings.workers > 1 else ""
        print(f"retinaface-trt serve: listening on {url_of(sock)} (POST /v1/detect{workers}; SIGINT or SIGTERM "
              "to stop)", file=sys.stderr, flush=True)

    try:
        service = Service(DETECTOR.parse(args).options(), tuple(args.input_size), settings, args.verbose > 0)
        if settings.workers > 1:
            status = serve_workers(service, sock, announce)
        else:
            run_service(service, sock, announce)
            status = 0
    finally:
        sock.close()
    print("retinaface-trt serve: stopped", file=sys.stderr)
    return status
