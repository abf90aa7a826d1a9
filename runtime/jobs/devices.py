"""``--devices``: the list of devices a job runs on, one worker process each.

Syntax (checked while the command line is parsed): ``all`` (every CUDA device PyTorch sees), or a comma-separated
list of ``cuda:N``, ``cuda`` (cuda:0) and ``cpu`` entries; an entry may repeat (two workers on one GPU overlap
their host work; ``cpu,cpu`` is how the multi-process path is tested on machines without a GPU). Whether the
devices exist is checked when the command starts (:func:`resolve_devices`).
"""

from __future__ import annotations

from retinaface_trt.errors import RetinaFaceError
from runtime.options import check_device

ALL = "all"


def check_devices(text: str) -> list[str]:
    """``text`` as a list of device names (``all`` stays ``["all"]``); RetinaFaceError for bad syntax."""
    entries = [entry.strip().lower() for entry in str(text).split(",")]
    if entries == [ALL]:
        return entries
    if any(entry in ("", ALL, "auto") for entry in entries):
        raise RetinaFaceError(f"expected all, or devices separated by commas (cuda:0,cuda:1 or cpu,cpu; no auto), "
                              f"found {text!r}")
    return [check_device(entry) for entry in entries]


def resolve_devices(names: list[str]) -> list[str]:
    """The devices ``names`` stand for, each as its canonical name (``cuda:0``, ``cpu``); RetinaFaceError for a
    device that does not exist, or for ``all`` on a machine where PyTorch sees no GPU."""
    import torch

    from runtime.device import resolve_device

    wanted = names[0] if names == [ALL] else next((name for name in names if name.startswith("cuda")), None)
    if wanted and not torch.cuda.is_available():
        raise RetinaFaceError(f"--devices {wanted}: PyTorch sees no CUDA GPU; list CPU workers instead (--devices cpu "
                              "for one worker process on the CPU)")
    if names == [ALL]:
        return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    return [str(resolve_device(name)) for name in names]


def cpu_shares(devices: list[str], cpus: set[int]) -> list[set[int] | None]:
    """For each device, the CPUs its worker is pinned to: the ``cpus`` this process may use, split evenly
    between the ``cpu`` workers (their torch, ONNX Runtime and OpenCV threads then do not compete); None for GPU
    workers (not pinned). With more CPU workers than CPUs, workers share them round-robin."""
    ordered = sorted(cpus)
    on_cpu = [i for i, device in enumerate(devices) if device == "cpu"]
    shares: list[set[int] | None] = [None] * len(devices)
    for rank, index in enumerate(on_cpu):
        if len(on_cpu) > len(ordered):
            shares[index] = {ordered[rank % len(ordered)]}
        else:       # contiguous blocks (a NUMA node's CPUs are numbered together), sizes differing by one at most
            shares[index] = set(ordered[rank * len(ordered) // len(on_cpu):(rank + 1) * len(ordered) // len(on_cpu)])
    return shares
