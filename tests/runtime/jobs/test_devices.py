"""--devices: its syntax, what it resolves to, and how CPU workers share the CPUs."""

from __future__ import annotations

import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.jobs.devices import check_devices, cpu_shares, resolve_devices


@pytest.fixture
def two_gpus(monkeypatch):
    """PyTorch reports two CUDA devices (without any being present: only the names are exercised)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.mark.parametrize("text, expected", [("cuda:0,cuda:1", ["cuda:0", "cuda:1"]), ("all", ["all"]),
                                            (" CPU , cpu ", ["cpu", "cpu"]), ("cuda", ["cuda"])])
def test_accepted_spellings(text, expected):
    assert check_devices(text) == expected


@pytest.mark.parametrize("text, match", [("cuda:0,,cuda:1", "separated by commas"), ("auto", "no auto"),
                                         ("all,cuda:0", "expected all, or devices"), ("cpu:1", "the CPU takes no index"),
                                         ("gpu0", "device must be")])
def test_refused_spellings(text, match):
    with pytest.raises(RetinaFaceError, match=match):
        check_devices(text)


def test_all_is_every_gpu(two_gpus):
    assert resolve_devices(["all"]) == ["cuda:0", "cuda:1"]


def test_names_become_canonical(two_gpus):
    assert resolve_devices(["cuda", "cuda:1", "cpu"]) == ["cuda:0", "cuda:1", "cpu"]


def test_a_gpu_that_is_not_there_is_refused(two_gpus):
    with pytest.raises(RetinaFaceError, match=r"'cuda:2' asked for, but PyTorch sees 2 CUDA device\(s\)"):
        resolve_devices(["cuda:0", "cuda:2"])


@pytest.mark.parametrize("names, named", [(["all"], "all"), (["cpu", "cuda:1"], "cuda:1")])
def test_gpus_without_a_gpu_say_what_to_do(monkeypatch, names, named):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RetinaFaceError, match=f"--devices {named}: PyTorch sees no CUDA GPU; list CPU workers "
                                              r"instead \(--devices cpu"):
        resolve_devices(names)


def test_cpu_workers_get_disjoint_blocks_of_the_cpus_and_gpu_workers_none():
    shares = cpu_shares(["cpu", "cuda:0", "cpu", "cpu"], set(range(8)))
    assert shares[1] is None
    cpu = [shares[0], shares[2], shares[3]]
    assert set().union(*cpu) == set(range(8)) and sum(map(len, cpu)) == 8
    assert sorted(map(len, cpu)) == [2, 3, 3] and all(max(s) - min(s) == len(s) - 1 for s in cpu)


def test_more_cpu_workers_than_cpus_share_them():
    assert cpu_shares(["cpu", "cpu", "cpu"], {4, 5}) == [{4}, {5}, {4}]
