"""resolve_device: the one place where a device name becomes a torch.device, refusing what does not exist."""

from __future__ import annotations

import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.device import resolve_device


@pytest.fixture
def one_gpu(monkeypatch):
    """PyTorch reports one CUDA device (without one being present: only the checks are exercised)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("name", ["cpu:5", "cpu:0", "cuda:-1", "cuda:x", "tpu", "", "gpu", 3])
def test_malformed_names_are_refused(name):
    with pytest.raises(RetinaFaceError, match="device must be auto, cpu, cuda or cuda:N"):
        resolve_device(name)


def test_cpu_with_an_index_says_how_to_fix_it():
    with pytest.raises(RetinaFaceError, match="the CPU takes no index: use cpu"):
        resolve_device("cpu:5")


@pytest.mark.parametrize("name", ["cpu", "CPU", " cpu "])
def test_cpu_spellings(name):
    assert resolve_device(name) == torch.device("cpu")


def test_cuda_index_beyond_the_gpus_is_refused(one_gpu):
    with pytest.raises(RetinaFaceError, match=r"'cuda:3' asked for, but PyTorch sees 1 CUDA device\(s\) \(cuda:0 to cuda:0\)"):
        resolve_device("cuda:3")


def test_existing_cuda_index_is_accepted(one_gpu):
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_cuda_without_an_index_is_device_0(one_gpu):
    """Not "the calling thread's current device": the pipeline makes its device current around its work and
    keys caches by the device's name, which must therefore name one device."""
    assert resolve_device("cuda") == torch.device("cuda", 0)


def test_auto_and_none_pick_what_is_there(one_gpu):
    assert resolve_device("auto") == resolve_device(None) == torch.device("cuda", 0)
