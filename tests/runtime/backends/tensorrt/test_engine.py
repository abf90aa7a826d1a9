"""TensorRTBackend (runtime.backends.tensorrt.engine) with fakes of TensorRT and CUDA that follow TensorRT's
documented behaviour (tests/runtime/backends/tensorrt/fakes.py): devices, streams, buffers, lifecycle.
The real bindings are checked in tests/conformance; a real engine in test_engine_real.py (-m tensorrt)."""

from __future__ import annotations

import json

import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt import compat as trt_compat
from runtime.backends.tensorrt.engine import ALIGNMENT, TensorRTBackend
from runtime.backends.tensorrt.sidecar import EngineMismatchError, write_sidecar
from tests.runtime.backends.tensorrt.fakes import FakeCuda, FakeEngine, aligned_empty, fake_trt, info_for, priors_count

PLAN = b"serialized plan" * 10
DYNAMIC = [(1, 3, 160, 160), (1, 3, 640, 640), (4, 3, 1024, 1024)]


def write_engine(folder, fixed=True, **changes):
    path = folder / "m.engine"
    path.write_bytes(PLAN)
    shape = [-1, 3, 640, 640] if fixed else [-1, 3, -1, -1]
    profile = [(1, 3, 640, 640), (1, 3, 640, 640), (8, 3, 640, 640)] if fixed else DYNAMIC
    write_sidecar(path, info_for(PLAN, precision="fp32", input_shape=shape,
                                 profile=dict(zip(("min", "opt", "max"), map(list, profile))), **changes))
    return path, profile


@pytest.fixture()
def setup(tmp_path):
    """(make, cuda, trt): make(**options) -> TensorRTBackend on device 1 over a fake engine."""
    cuda = FakeCuda()
    trt = fake_trt("10.16.1.11", cuda=cuda)

    def make(fixed=True, outputs=("loc", "conf", "landms"), contexts_fail=False, device="cuda:1", **changes):
        path, profile = write_engine(tmp_path, fixed, **changes)
        trt.engine = FakeEngine(trt, profile, outputs, contexts_fail)
        return TensorRTBackend(path, device=device, trt=trt, cuda=cuda)

    return make, cuda, trt


def batch(n=1, h=640, w=640):
    """A random input at an aligned address, as a CUDA allocation would be."""
    return aligned_empty(n * 3 * h * w).view(n, 3, h, w).normal_()


def test_device_n_is_current_around_every_tensorrt_call(setup):
    """Audit item 1: infer used to call set_input_shape/execute_async_v3 with device 0 current."""
    make, cuda, trt = setup
    backend = make(fixed=False)
    backend.infer(batch(2, 320, 320))
    backend.infer(batch(1, 640, 480))
    devices = [call[1] for call in trt.calls if call[0] != "Runtime"]
    assert len(devices) > 10 and set(devices) == {1} and cuda.current == 0


def test_infer_runs_on_a_stream_of_its_own_created_on_its_device(setup):
    """Issue 25 point 1: the caller's stream was handed to TensorRT, which is the legacy default stream (0)
    unless the caller switched: TensorRT then adds device synchronisations (enqueueV3). The fake context
    refuses handle 0 as a stand-in for that cost."""
    make, cuda, trt = setup
    backend = make()
    backend.infer(batch())
    backend.infer(batch())
    [ours] = cuda.streams
    assert ours.device == 1 and ours.handle != 0 and ours.created_on == 1
    assert [stream for c in trt.engine.contexts for _, stream in c.enqueued] == [ours.handle, ours.handle]


def test_the_enqueue_waits_on_the_callers_stream_and_the_caller_waits_on_it(setup):
    make, cuda, trt = setup
    backend = make()
    x = batch()
    backend.infer(x)
    ours = cuda.streams[0].handle
    assert [e[0] for e in cuda.timeline] == ["join", "execute_async_v3", "keep_alive", "rejoin"]
    assert cuda.timeline[0][1:3] == (ours, 0) and cuda.timeline[3][1:3] == (0, ours)
    assert cuda.timeline[2][1:] == (x.data_ptr(), ours)


def test_layer_times_run_on_the_backends_stream_and_wait_for_it(setup):
    make, cuda, trt = setup
    backend = make()
    backend.layer_times(batch(2), repeats=3)
    ours = cuda.streams[0].handle
    assert [stream for _, stream in trt.engine.contexts[-1].enqueued] == [ours] * 3
    assert cuda.synchronized == [ours] * 3


def test_outputs_are_allocated_once_at_the_profile_maximum(setup):
    """Audit item 3: output buffers used to be kept per input shape, growing without bound."""
    make, cuda, trt = setup
    backend = make(fixed=False)
    most, activations = priors_count(1024, 1024) * 4, trt.engine.memory_size
    assert sorted(cuda.allocations) == sorted([activations, most * 2, most * 4, most * 10])
    first = [t.data_ptr() for t in backend.infer(batch(1, 160, 160))]
    for n, h, w in [(4, 1024, 1024), (2, 480, 640), (3, 1000, 200), (1, 160, 160)]:
        outputs = backend.infer(batch(n, h, w))
        assert [tuple(t.shape) for t in outputs] == [(n, priors_count(h, w), k) for k in (4, 2, 10)]
        assert [t.data_ptr() for t in outputs] == first
    assert len(cuda.allocations) == 4


def test_input_shape_is_set_only_when_it_changes(setup):
    make, _, trt = setup
    backend = make(fixed=False)
    for shape in [(1, 320, 320)] * 3 + [(2, 320, 320)] * 2:
        backend.infer(batch(*shape))
    eager, *own = trt.engine.contexts
    assert [c[2] for c in trt.calls if c[0] == "set_input_shape"] == \
        [DYNAMIC[2], (1, 3, 320, 320), (1, 3, 320, 320), (2, 3, 320, 320), (2, 3, 320, 320)]
    assert eager.shape_calls == 3 and [(c.shape, c.shape_calls) for c in own] == [((1, 3, 320, 320), 1),
                                                                                  ((2, 3, 320, 320), 1)]


def test_repeated_calls_return_the_same_views(setup):
    make, _, _ = setup
    backend = make()
    backend.infer(batch())
    assert all(a is b for a, b in zip(backend.infer(batch()), backend.infer(batch())))


def test_an_aligned_contiguous_input_is_used_in_place(setup):
    make, cuda, trt = setup
    backend = make()
    x = batch()
    backend.infer(x)
    assert trt.engine.contexts[0].enqueued[0][0]["input"] == x.data_ptr() and len(cuda.allocations) == 4


@pytest.mark.parametrize("layout", ["unaligned", "strided"])
def test_an_unaligned_or_strided_input_is_copied_not_refused(setup, layout):
    """Audit item 5: TensorRT needs 256-byte aligned addresses; such inputs are copied into a staging buffer."""
    make, cuda, trt = setup
    backend = make()
    if layout == "unaligned":
        x = aligned_empty(3 * 640 * 640 + 1)[1:].view(1, 3, 640, 640)
    else:
        x = torch.randn(1, 3, 640, 640 * 2)[..., ::2]
    x.copy_(torch.randn_like(x))
    backend.infer(x)
    address = trt.engine.contexts[0].enqueued[0][0]["input"]
    staging = backend._handles.staging
    assert address % ALIGNMENT == 0 and address == staging.data_ptr() != x.data_ptr()
    assert torch.equal(staging[:x.numel()].view(x.shape), x)


def test_an_execution_context_of_none_is_an_error(setup):
    """Audit item 5: create_execution_context() returning None (out of memory) was not checked."""
    make, _, _ = setup
    with pytest.raises(RetinaFaceError, match="could not create an execution context"):
        make(contexts_fail=True)


def test_an_engine_tensorrt_cannot_load_is_an_error(setup, tmp_path):
    make, _, trt = setup
    make()
    trt.engine = None
    with pytest.raises(RetinaFaceError, match="could not load the engine"):
        TensorRTBackend(tmp_path / "m.engine", device="cuda:1", trt=trt, cuda=FakeCuda())


def test_builder_and_runtime_share_the_process_logger(setup):
    make, _, trt = setup
    make()
    assert trt.runtimes[0].logger is trt_compat.tensorrt_logger(trt)


@pytest.mark.parametrize("compatible", [False, True])
def test_host_code_is_allowed_exactly_for_version_compatible_engines(setup, compatible):
    make, _, trt = setup
    make(version_compatible=compatible)
    assert [c[2] for c in trt.calls if c[0] == "deserialize"] == [compatible]


def test_a_version_compatible_engine_from_an_older_version_is_loaded(setup):
    make, _, trt = setup
    backend = make(tensorrt_version="10.3.0", version_compatible=True)
    assert backend.infer(batch())[0].shape == (1, 16800, 4)


def test_an_engine_of_another_version_is_refused_before_deserializing(setup):
    make, _, trt = setup
    with pytest.raises(EngineMismatchError, match="TensorRT 10.3.0 \\(running 10.16.1.11\\)"):
        make(tensorrt_version="10.3.0")
    assert not [c for c in trt.calls if c[0] == "deserialize"]


def test_attributes_of_the_pipeline_contract(setup):
    make, _, _ = setup
    backend = make()
    assert (backend.name, backend.cfg.name, backend.device, backend.precision) == \
        ("tensorrt", "mobilenet0.25", torch.device("cuda", 1), "fp32")
    assert (backend.fixed_input_size, backend.max_batch, backend.capturable, backend.postprocess_in_network) == \
        ((640, 640), 8, True, False)


def test_an_engine_with_postprocessing_returns_dets_and_count(setup):
    make, _, _ = setup
    settings = {"confidence_threshold": 0.02, "nms_threshold": 0.4, "top_k": 3840, "keep_top_k": 750}
    backend = make(outputs=("dets", "count"), postprocess=settings)
    dets, count = backend.infer(batch(3))
    assert (dets.shape, dets.dtype, count.shape, count.dtype) == ((3, 750, 15), torch.float32, (3,), torch.int32)
    assert backend.postprocess_in_network and not backend.capturable


def test_outputs_that_differ_from_the_sidecar_are_refused(setup):
    make, _, _ = setup
    with pytest.raises(RetinaFaceError, match="its sidecar promises"):
        make(outputs=("dets", "count"))


@pytest.mark.parametrize("bad, message", [(torch.randn(1, 3, 640, 640, dtype=torch.float64), "float32 tensor"),
                                          (torch.randn(1, 3, 480, 640), "built for 640x640 inputs, found 640x480")])
def test_a_wrong_batch_is_refused(setup, bad, message):
    make, _, _ = setup
    with pytest.raises(RetinaFaceError, match=message):
        make().infer(bad)


def test_a_batch_above_the_profile_is_refused_with_the_fix(setup):
    make, _, _ = setup
    with pytest.raises(RetinaFaceError, match="outside the engine's profile .* larger --max-batch"):
        make().infer(batch(9))


def test_close_twice_and_infer_after_close(setup):
    make, cuda, _ = setup
    backend = make()
    backend.close()
    backend.close()
    assert backend._handles.context is None and backend._handles.buffers == {}
    with pytest.raises(RetinaFaceError, match="was closed"):
        backend.infer(batch())


def test_context_manager_closes(setup):
    make, _, _ = setup
    with make() as backend:
        backend.infer(batch())
    assert backend._handles.engine is None


def test_layer_times_average_the_profiler_on_a_second_context(setup):
    make, cuda, trt = setup
    backend = make()
    times = backend.layer_times(batch(2), repeats=4)
    main, profiled = trt.engine.contexts
    assert times == {"conv": 0.5, "nms": 0.25} and len(cuda.synchronized) == 4
    assert profiled.enqueue_emits_profile is False and len(profiled.enqueued) == 4 and main.enqueued == []


def test_layer_information_uses_a_context_at_the_optimal_shape(setup):
    make, _, trt = setup
    backend = make(fixed=False)
    assert json.loads(backend.layer_information()) == {"Layers": []}
    inspect = [c for c in trt.calls if c[0] == "inspect"][0]
    assert inspect[1] == "JSON" and inspect[2] is trt.engine.contexts[0] and trt.engine.contexts[0].shape == DYNAMIC[1]


# One execution context per captured shape (issue 25 point 2) ----------------------------------------------
def capture(cuda, backend, x):
    """``backend.infer(x)`` as CUDA graph capture sees it (runtime.device.GraphCache: warm-up, then capture)."""
    cuda.capture = True
    try:
        return backend.infer(x)
    finally:
        cuda.capture = False


def test_a_captured_shape_has_a_context_whose_shape_never_changes_afterwards(setup):
    """A captured enqueue belongs to the context state it was captured with: set_input_shape on that context
    (for another shape, eagerly or in another capture) must never follow its capture."""
    make, cuda, trt = setup
    backend = make(fixed=False)
    a, b = batch(1, 320, 320), batch(2, 480, 640)
    for x in (a, a, b, b):                       # each shape: eager once, then warm-up, as GraphCache does
        backend.infer(x)
    capture(cuda, backend, a)
    capture(cuda, backend, b)
    for x in (batch(3, 160, 160), a, batch(1, 1024, 1024), b):
        backend.infer(x)
    captured = {c.shape: c for c in trt.engine.contexts if c.captured}
    assert set(captured) == {(1, 3, 320, 320), (2, 3, 480, 640)}
    assert all(c.shape_calls_after_capture == 0 for c in captured.values())


def test_a_shape_is_captured_only_once_it_ran_outside_capture_on_its_own_context(setup):
    """TensorRT asks for one enqueue outside capture first (trtexec: initialisation is not capturable)."""
    make, cuda, trt = setup
    backend = make(fixed=False)
    backend.infer(batch(1, 320, 320))
    with pytest.raises(RuntimeError, match="run it once outside capture"):
        capture(cuda, backend, batch(1, 320, 320))


def test_every_context_shares_one_activation_buffer_of_the_engines_size(setup):
    make, cuda, trt = setup
    backend = make(fixed=False)
    for shape in [(1, 320, 320), (2, 320, 320), (1, 640, 480)]:
        backend.infer(batch(*shape))
        backend.infer(batch(*shape))
    memory = {c.device_memory for c in trt.engine.contexts}
    assert len(trt.engine.contexts) == 4 and len(memory) == 1 and None not in memory
    assert backend.activation_bytes == trt.engine.memory_size and trt.engine.memory_size in cuda.allocations
    assert all(c.strategy == "USER_MANAGED" for c in trt.engine.contexts)


def test_on_8_6_contexts_are_made_without_device_memory_and_given_the_shared_buffer(tmp_path):
    cuda = FakeCuda()
    trt = fake_trt("8.6.1", cuda=cuda)
    path, profile = write_engine(tmp_path, tensorrt_version="8.6.1")
    trt.engine = FakeEngine(trt, profile)
    backend = TensorRTBackend(path, device="cuda:1", trt=trt, cuda=cuda)
    backend.infer(batch())
    [context] = trt.engine.contexts
    assert context.strategy == "WITHOUT_DEVICE_MEMORY" and context.device_memory is not None


def test_contexts_of_their_own_are_bounded_and_only_uncaptured_ones_make_room(setup, monkeypatch):
    from runtime.backends.tensorrt import engine as runner

    monkeypatch.setattr(runner, "CONTEXTS", 2)
    make, cuda, trt = setup
    backend = make(fixed=False)
    a, b, c = batch(1, 160, 160), batch(1, 320, 320), batch(1, 480, 480)
    for x in (a, a, b, b):
        backend.infer(x)
    capture(cuda, backend, a)
    backend.infer(c)
    backend.infer(c)                     # b, never captured, makes room (after the stream is done with it)
    assert list(backend._handles.contexts) == [(1, 3, 160, 160), (1, 3, 480, 480)] and len(cuda.synchronized) == 1
    capture(cuda, backend, c)
    backend.infer(b)
    backend.infer(b)                     # both captured: b stays on the shared context
    assert list(backend._handles.contexts) == [(1, 3, 160, 160), (1, 3, 480, 480)]
    with pytest.raises(runner.CaptureRefused, match="needs an execution context of its own"):
        capture(cuda, backend, b)
