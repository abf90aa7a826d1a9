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


def test_seen_counter_counts_each_key_and_forgets_the_least_recently_seen():
    from runtime.device import SeenCounter

    seen = SeenCounter(size=2)
    assert [seen(s) for s in [(1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 4, 4), (1, 3, 2, 2)]] == [1, 2, 1, 1]
    assert seen((1, 3, 2, 2)) == 2 and seen((1, 3, 8, 8)) == 1    # (8, 8) was the oldest of three, forgotten


def test_the_executor_hands_only_repeated_shapes_to_cudnn(monkeypatch):
    """A one-off size must not pay for cuDNN's planning (2.4 s per new shape on an H200)."""
    import contextlib

    import runtime.backends.executor as executor
    from wts_export.random_weights import random_weights

    calls = []
    monkeypatch.setattr(executor, "float32_convolutions",
                        lambda repeated: calls.append(repeated) or contextlib.nullcontext())
    backend = executor.ExecutorBackend(random_weights("mobilenet0.25", seed=0)[1], device="cpu")
    for size in (32, 32, 64, 32):
        backend.infer(torch.zeros(1, 3, size, size))
    assert calls == [False, True, False, True]


@pytest.mark.parametrize("repeated, tf32, cudnn_on, autotuned", [(False, False, False, False), (True, False, True, True),
                                                                 (False, True, True, False)])
def test_float32_convolutions_flags(repeated, tf32, cudnn_on, autotuned):
    """New shapes skip cuDNN unless matrix products may use TF32; TF32 is always off in cuDNN."""
    from runtime.device import float32_convolutions

    matmul, before = torch.backends.cuda.matmul, torch.backends.cuda.matmul.allow_tf32
    matmul.allow_tf32 = tf32          # a property of torch's C state: set and restored by hand
    try:
        with float32_convolutions(repeated=repeated):
            flags = torch.backends.cudnn
            assert (flags.enabled, flags.benchmark, flags.allow_tf32) == (cudnn_on, autotuned, False)
    finally:
        matmul.allow_tf32 = before


def test_graph_cache_captures_a_key_on_its_capture_after_th_call_and_forgets_one_off_keys():
    """The counting of GraphCache, without a GPU: capture and replay are stood in for."""
    from runtime.device import GraphCache

    cache = GraphCache(lambda x: ("eager", x), capture_after=2)
    cache._capture = lambda xs: (None, xs, ("captured", xs[0]))
    cache._replay = lambda entry, xs: ("replayed", xs[0])
    assert [cache("a", 1)[0], cache("a", 2)[0], cache("a", 3)[0]] == ["eager", "captured", "replayed"]
    for key in range(5000):                      # one-off keys: run eagerly, and their counts stay bounded
        assert cache(key, 0)[0] == "eager"
    assert len(cache._seen._counts) <= cache._seen.size and len(cache) == 1
