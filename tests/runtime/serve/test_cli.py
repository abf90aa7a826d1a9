"""``retinaface-trt serve``: flags and start-up errors in-process, and a real server process stopped by SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.cli import main as cli
from tests.runtime.serve.conftest import b64, listening_addresses

REPO = Path(__file__).resolve().parents[3]


def test_help_lists_the_service_flags(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0
    for flag in ("--max-batch", "--max-delay-ms", "--max-queue", "--max-body-mib", "--shutdown-timeout",
                 "--weights", "--engine", "--resize", "--vis-threshold", "--confidence-threshold"):
        assert flag in out
    assert "default 127.0.0.1" in out


@pytest.mark.parametrize("flag, value, message", [
    ("--port", "70000", "port must be an integer in 0..65535, found '70000'"),
    ("--max-batch", "0", "must be an integer ≥ 1"),
    ("--max-delay-ms", "-1", "must be an integer ≥ 0"),
])
def test_bad_values_are_usage_errors(capsys, flag, value, message):
    with pytest.raises(SystemExit) as stop:
        cli.main(["serve", "--weights", "w.pth", flag, value])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.usefixtures("serve_stack")
def test_missing_weights_fail_with_one_line(capsys):
    assert cli.main(["serve", "--weights", "missing.pth", "--port", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["retinaface-trt serve: error: weights file missing.pth not found; expected a .pth or .wts file"]


@pytest.mark.usefixtures("serve_stack")
def test_a_taken_port_fails_before_the_model_loads(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = cli.main(["serve", "--weights", "missing.pth", "--port", str(port)])
    err = capsys.readouterr().err
    assert status == 1 and f"cannot listen on 127.0.0.1:{port}" in err and "missing.pth" not in err


def test_a_missing_extra_names_the_install_command():
    from runtime.serve import require

    with pytest.raises(RetinaFaceError, match=r"no_such_module_xyz not installed; .*pip install '\.\[serve\]' in the retinaface-trt checkout"):
        require(("no_such_module_xyz",))


def _in_flight(url: str) -> float:
    import httpx

    text = httpx.get(url + "/metrics", timeout=5).text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("retinaface_in_flight ")))


@pytest.mark.usefixtures("serve_stack")
def test_sigterm_drains_the_requests_in_flight(mnet_pth, photos, sdk):
    import httpx

    from runtime.serve.load import ServerProcess

    server = ServerProcess(["--weights", str(mnet_pth), "--resize", "letterbox", "--input-size", "320x320",
                            "--max-batch", "8", "--max-delay-ms", "2000"], cwd=REPO)   # batch forms 2 s after the first
    try:
        server.wait_ready()
        assert listening_addresses(server.process.pid) == {("127.0.0.1", int(server.url.rsplit(":", 1)[1]))}
        names = ["crowd_1024x624.jpg", "astronaut_512x512.png", "selfie_1600x898.jpg", "children_1024x768.jpg"]
        with ThreadPoolExecutor(len(names)) as pool:
            futures = [pool.submit(httpx.post, server.url + "/v1/detect", json={"image": b64(photos[n])}, timeout=60)
                       for n in names]
            deadline = time.monotonic() + 30
            while _in_flight(server.url) < len(names):
                assert time.monotonic() < deadline, "the requests were never all admitted"
            answered_before_signal = [future.done() for future in futures]
            server.process.send_signal(signal.SIGTERM)
            answers = [future.result() for future in futures]
        status = server.process.wait(60)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert answered_before_signal == [False] * len(names)
    for name, response in zip(names, answers):
        assert response.status_code == 200
        assert len(response.json()["faces"]) == len(json.loads(sdk.infer(b64(photos[name])))["faces"])
    assert status == 0 and "retinaface-trt serve: stopped" in server.stderr()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/healthz", timeout=5)


def _workers_of(pid: int) -> list[int]:
    """The worker processes of a ``serve --workers`` parent (its spawned children; not the resource tracker)."""
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        children = [int(child) for child in handle.read().split()]
    workers = []
    for child in children:
        with open(f"/proc/{child}/cmdline", "rb") as handle:
            if b"spawn_main" in handle.read():
                workers.append(child)
    return workers


@pytest.mark.usefixtures("serve_stack")
def test_workers_listen_on_one_port_answer_as_the_sdk_and_stop_together(mnet_pth, photos, sdk):
    import httpx

    from runtime.serve.load import ServerProcess

    server = ServerProcess(["--weights", str(mnet_pth), "--workers", "2", "--resize", "letterbox",
                            "--input-size", "320x320"], cwd=REPO)
    try:
        server.wait_ready()
        port = int(server.url.rsplit(":", 1)[1])
        workers = _workers_of(server.process.pid)
        assert len(workers) == 2
        assert all(listening_addresses(pid) == {("127.0.0.1", port)} for pid in workers)
        names = ["crowd_1024x624.jpg", "astronaut_512x512.png", "selfie_1600x898.jpg", "children_1024x768.jpg"] * 2
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda n: httpx.post(server.url + "/v1/detect", json={"image": b64(photos[n])},
                                                         timeout=120), names))
        server.process.send_signal(signal.SIGTERM)
        status = server.process.wait(120)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    for name, response in zip(names, answers):
        assert response.status_code == 200
        assert len(response.json()["faces"]) == len(json.loads(sdk.infer(b64(photos[name])))["faces"])
    err = server.stderr()
    assert status == 0 and "2 workers" in err and "retinaface-trt serve: stopped" in err
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


@pytest.mark.usefixtures("serve_stack")
def test_a_worker_that_cannot_start_stops_the_service_with_its_error():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "retinaface_trt", "serve", "--weights", "missing.pth", "--workers",
                           "2", "--port", "0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert ("retinaface-trt serve: worker 0: error: weights file missing.pth not found; expected a .pth or .wts file"
            in done.stderr.splitlines())
    assert "listening on" not in done.stderr and "worker 1" not in done.stderr


@pytest.mark.usefixtures("serve_stack")
def test_a_worker_lost_while_serving_stops_the_others_with_status_1(mnet_pth):
    import os

    from runtime.serve.load import ServerProcess

    server = ServerProcess(["--weights", str(mnet_pth), "--workers", "2", "--resize", "stretch",
                            "--input-size", "160x160"], cwd=REPO)
    try:
        server.wait_ready()
        workers = _workers_of(server.process.pid)
        os.kill(workers[1], signal.SIGKILL)
        status = server.process.wait(120)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert status == 1
    assert "a worker ended (worker retinaface-serve-1 killed by SIGKILL); stopping the others" in server.stderr()
    assert not Path(f"/proc/{workers[0]}").exists()
