"""The progress bar: redrawn in place on a terminal only; plain, spaced lines in files and pipes."""

from __future__ import annotations

import io

from runtime.progress import LOG_INTERVAL_S, Progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(stream, steps: int = 5, seconds_per_step: float = 1.0) -> str:
    clock = Clock()
    bar = Progress(steps, "detect", stream=stream, unit="images", clock=clock)
    for _ in range(steps):
        clock.now += seconds_per_step
        bar.advance()
    bar.write("retinaface-trt detect: error: x.jpg: no such file")
    bar.finish()
    return stream.getvalue()


def test_a_file_gets_no_control_characters_and_a_line_per_interval():
    text = run(io.StringIO(), steps=30)      # 30 s of steps, one second each
    assert "\r" not in text and "\x1b" not in text
    bars = [line for line in text.splitlines() if line.startswith("detect ")]
    done = [int(line.split()[1].split("/")[0]) for line in bars]
    step = int(LOG_INTERVAL_S)
    assert done == [1, 1 + step, 1 + 2 * step, 30]     # the first step, one per interval, the last
    assert text.splitlines()[-1] == "retinaface-trt detect: error: x.jpg: no such file"


def test_a_terminal_gets_the_bar_redrawn_in_place():
    text = run(Terminal())
    assert text.count("\r") >= 5 and "\r\x1b[K" in text and "detect 5/5 " in text and text.endswith("\n")


def test_a_stream_of_unknown_length_ends_its_log_with_the_final_count():
    clock, stream = Clock(), io.StringIO()
    bar = Progress(None, "detect", stream=stream, unit="frames", clock=clock)
    for _ in range(5):
        clock.now += 0.5
        bar.advance()
    bar.finish()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("detect 1 frames") and lines[-1].startswith("detect 5 frames  2.0 frames/s")
    assert "\r" not in stream.getvalue()
