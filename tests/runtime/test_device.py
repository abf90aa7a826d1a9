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


def test_the_executor_hands_a_shape_to_cudnn_once_its_pixels_paid_for_the_plan(monkeypatch):
    """A one-off size must not pay for cuDNN's planning (2.2 s per new shape in float16 on an H100); a shape
    is planned once the pixels it ran untuned reach the plan's price, and at once after settle()."""
    import contextlib

    import runtime.backends.executor as executor
    from wts_export.random_weights import random_weights

    calls = []
    monkeypatch.setattr(executor, "float32_convolutions",
                        lambda repeated: calls.append(repeated) or contextlib.nullcontext())
    monkeypatch.setitem(executor.TUNE_AFTER_PIXELS, "fp32", 3 * 32 * 32)
    backend = executor.ExecutorBackend(random_weights("mobilenet0.25", seed=0)[1], device="cpu")
    for size in (32, 32, 64, 32, 32, 16):
        backend.infer(torch.zeros(1, 3, size, size))
    assert calls == [False, False, False, False, True, False]
    assert backend.settled((1, 3, 32, 32)) and not backend.settled((1, 3, 16, 16))
    backend.settle((1, 3, 16, 16))
    backend.infer(torch.zeros(1, 3, 16, 16))
    assert calls[-1] is True


def test_tune_after_counts_pixels_per_key_with_bounded_memory():
    from runtime.device import TuneAfter

    rule = TuneAfter(pixels=100, size=2)
    assert [rule("a", 60), rule("a", 60), rule("a", 60)] == [False, False, True]
    assert rule("b", 500) is False and rule("b", 1) is True     # one large call pays at once: tuned from the next
    rule("c", 1)
    rule("d", 1)                                                 # a and b forgotten: bounded memory
    assert not rule.settled("a") and len(rule._run) == 2


@pytest.mark.parametrize("n, limit, bucket", [(1, None, 1), (2, None, 2), (3, None, 4), (5, None, 8), (64, None, 64),
                                              (65, None, 128), (100, 96, 96), (7, 6, 6), (0, None, 1)])
def test_batch_bucket_is_the_next_power_of_two_within_the_limit(n, limit, bucket):
    from runtime.device import batch_bucket

    assert batch_bucket(n, limit) == bucket


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


def test_graph_cache_waits_for_ready_before_capturing():
    """A backend still running a shape with untuned kernels is not captured with them."""
    from runtime.device import GraphCache

    ready = set()
    cache = GraphCache(lambda x: ("eager", x), capture_after=2, ready=lambda key: key in ready)
    cache._capture = lambda xs: (None, xs, ("captured", xs[0]))
    cache._replay = lambda entry, xs: ("replayed", xs[0])
    assert [cache("a", 1)[0], cache("a", 2)[0], cache("a", 3)[0]] == ["eager"] * 3
    ready.add("a")
    assert [cache("a", 4)[0], cache("a", 5)[0]] == ["captured", "replayed"]
