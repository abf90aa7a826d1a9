"""Starting the ``tritonserver`` of the nvidia-pytriton wheel on a model repository, on 127.0.0.1 only.

The wheel (installed into its own environment by ``tools/install_triton.sh``) holds, under
``pytriton/tritonserver/``: ``bin/tritonserver``, ``backends/python/`` (``libtriton_python.so`` and
``triton_python_backend_utils.py``) and one Python-backend stub per Python version in
``python_backend_stubs/3.X/``. A server is started by

* a backend folder of our own, ``backends/python/`` with links to those two files and to the stub of the
  environment's Python version (``--backend-directory``);
* ``PATH`` starting with the environment's ``bin`` (the stub takes its ``sys.prefix``, hence the
  environment's site-packages, from the ``python3`` found there) and ``LD_LIBRARY_PATH`` holding that
  Python's ``libpython3.X.so`` folder; ``OMP_NUM_THREADS=1`` unless set (see :meth:`TritonInstall.environment`);
* ``--http-address``, ``--grpc-address`` and ``--metrics-address`` 127.0.0.1, with free ports.

:class:`TritonServer` does that in a context manager, waits for ``/v2/health/ready`` and stops the
server with SIGINT (Triton then finishes the requests in flight).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError

LOCALHOST = "127.0.0.1"
INSTALL_HINT = "run tools/install_triton.sh (it creates .cache/venv-triton)"
_PROBE = ("import importlib.util, json, sys, sysconfig; spec = importlib.util.find_spec('pytriton'); "
          "print(json.dumps({'package': spec and spec.submodule_search_locations[0], "
          "'version': '%d.%d' % sys.version_info[:2], 'libdir': sysconfig.get_config_var('LIBDIR')}))")


@dataclass(frozen=True)
class TritonInstall:
    """Where the wheel's server is, in the environment ``venv``."""

    venv: Path
    root: Path            # .../site-packages/pytriton/tritonserver
    python_version: str   # "3.11"
    libdir: Path          # where that Python's libpython3.X.so is

    @classmethod
    def find(cls, venv: str | os.PathLike) -> "TritonInstall":
        """The install in ``venv``; RetinaFaceError (with the install command) if it is not there."""
        venv = Path(venv).absolute()
        python = venv / "bin" / "python"
        if not python.exists():
            raise RetinaFaceError(f"no Python environment at {venv}; {INSTALL_HINT}")
        probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True)
        if probe.returncode != 0:
            raise RetinaFaceError(f"the Python of {venv} does not run ({probe.stderr.strip().splitlines()[-1:]}); "
                                  f"{INSTALL_HINT}")
        found = json.loads(probe.stdout)
        if not found["package"]:
            raise RetinaFaceError(f"nvidia-pytriton is not installed in {venv}; {INSTALL_HINT}")
        install = cls(venv, Path(found["package"]) / "tritonserver", found["version"], Path(found["libdir"]))
        for path in (install.binary, install.stub):
            if not path.exists():
                raise RetinaFaceError(f"{path} is missing from the nvidia-pytriton install in {venv}; {INSTALL_HINT}")
        return install

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def stub(self) -> Path:
        return self.root / "python_backend_stubs" / self.python_version / "triton_python_backend_stub"

    def backend_directory(self, folder: Path) -> Path:
        """``folder/backends`` with ``python/`` linking the backend and this Python's stub; returns it."""
        python = folder / "backends" / "python"
        python.mkdir(parents=True, exist_ok=True)
        backend = self.root / "backends" / "python"
        for source in (backend / "libtriton_python.so", backend / "triton_python_backend_utils.py", self.stub):
            link = python / source.name
            if not link.exists():
                link.symlink_to(source)
        return python.parent

    def environment(self) -> dict[str, str]:
        """The server's environment: this venv's Python first on PATH, its libpython on the library path."""
        env = dict(os.environ)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(self.libdir), env.get("LD_LIBRARY_PATH")]))
        env.pop("PYTHONPATH", None)   # the models import the project from the venv, not from the caller's path
        # Each Python model is a process of its own, scaled by instances: one OpenMP thread each, so that torch's
        # threads of three processes do not wait on each other for cores (unless the caller chose otherwise).
        env.setdefault("OMP_NUM_THREADS", "1")
        return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (Triton takes no port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


class TritonServer:
    """``tritonserver`` on ``repository`` with HTTP, gRPC and metrics on 127.0.0.1; a context manager.

    install: a :class:`TritonInstall`; workdir: a folder for the backend links and ``tritonserver.log``.
    Both paths may be relative to the caller's working directory: they are made absolute here, because the
    server runs in ``workdir`` (a relative repository path would otherwise be looked up there).
    After :meth:`start`: ``http_url`` ("127.0.0.1:PORT", as tritonclient wants it), ``grpc_url``, ``metrics_url``.
    """

    def __init__(self, install: TritonInstall, repository: str | os.PathLike, workdir: str | os.PathLike,
                 extra_args: tuple[str, ...] = ()):
        self.install, self.repository, self.workdir = install, Path(repository).absolute(), Path(workdir).absolute()
        self.extra_args = tuple(extra_args)
        self.log_path = self.workdir / "tritonserver.log"
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"{LOCALHOST}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"{LOCALHOST}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOCALHOST}:{self.ports['metrics']}/metrics"

    def command(self) -> list[str]:
        """The full command line (ports must be chosen first)."""
        args = [str(self.install.binary), f"--model-repository={self.repository}",
                f"--backend-directory={self.install.backend_directory(self.workdir)}",
                "--exit-on-error=true", "--strict-readiness=true", "--allow-gpu-metrics=false",
                "--pinned-memory-pool-byte-size=0"]   # no CUDA here: no pinned host memory either
        for protocol in ("http", "grpc", "metrics"):
            args += [f"--{protocol}-address={LOCALHOST}", f"--{protocol}-port={self.ports[protocol]}"]
        return args + list(self.extra_args)

    def start(self, timeout: float = 180.0) -> "TritonServer":
        """Start the server and wait until every model is ready; RetinaFaceError with the log's tail if not."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = {protocol: free_port() for protocol in ("http", "grpc", "metrics")}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            env=self.install.environment(), cwd=self.workdir)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RetinaFaceError(f"tritonserver exited with status {self.process.returncode} while starting; "
                                      f"its log ends with: {self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.25)
        self.stop()
        raise RetinaFaceError(f"tritonserver was not ready within {timeout:g} s; its log ends with: {self.log_tail()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGINT (Triton drains the requests in flight), then SIGKILL after ``timeout`` s; the exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text.splitlines()[-lines:])

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
