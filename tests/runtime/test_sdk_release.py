"""Engine.release() while other threads call infer(): every call gets its record or the project's error."""

from __future__ import annotations

import base64
import threading

import pytest

from retinaface_trt.errors import RetinaFaceError


def test_release_during_infer_calls_gives_records_or_the_projects_error(mnet_pth, shared_dir):
    from runtime import Engine

    image = base64.b64encode((shared_dir / "images" / "astronaut_512x512.png").read_bytes()).decode()
    engine = Engine(weights=str(mnet_pth), backend="torch", device="cpu", resize="letterbox", input_size=(160, 160))
    expected = engine.infer(image)
    outcomes: list = []
    started = threading.Barrier(5)

    def call_repeatedly():
        started.wait()
        for _ in range(20):
            try:
                outcomes.append(engine.infer(image))
            except RetinaFaceError as error:
                outcomes.append(error)
            except Exception as error:   # noqa: BLE001 - what the test looks for
                outcomes.append(("unexpected", repr(error)))

    threads = [threading.Thread(target=call_repeatedly) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    while not outcomes:
        pass
    engine.release()
    for thread in threads:
        thread.join(60)
    unexpected = [o for o in outcomes if isinstance(o, tuple)]
    errors = [o for o in outcomes if isinstance(o, RetinaFaceError)]
    assert not unexpected, unexpected[:3]
    assert all(o == expected for o in outcomes if isinstance(o, str))
    assert errors and all(str(e) == "this Engine was released; create a new one" for e in errors)
    with pytest.raises(RetinaFaceError, match="released"):
        engine.infer(image)
    engine.release()                      # twice is fine
