"""The shared flag groups: one parser for sizes, ranges checked while parsing."""

from __future__ import annotations

import argparse

import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.cli import options


def test_size_parses_width_by_height():
    assert options.size("640x480") == (640, 480) and options.size("320×240") == (320, 240)


@pytest.mark.parametrize("text", ["640", "0x480", "640x-1", "axb", "9000x100", "640x480x3"])
def test_size_refuses_what_is_not_a_positive_bounded_pair(text):
    with pytest.raises(argparse.ArgumentTypeError):
        options.size(text)


@pytest.mark.parametrize("text", ["-0.1", "1.5", "nan", "inf", "x"])
def test_probability_refuses_out_of_range(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"\[0, 1\]"):
        options.probability(text)


def test_the_detector_flags_parse_into_typed_settings_mapping_every_flag():
    from retinaface_trt.thresholds import Thresholds

    parser = argparse.ArgumentParser()
    group = options.DetectorFlags().add(parser)
    args = parser.parse_args(["--weights", "w.pth", "--top-k", "10", "--input-size", "320x240",
                              "--network", "resnet50"])
    settings = group.parse(args)
    assert settings.pipeline.thresholds == Thresholds(top_k=10) and settings.model.network == "resnet50"
    mapped = settings.options()
    assert (mapped["weights"], mapped["thresholds"].top_k, mapped["input_size"]) == ("w.pth", 10, (320, 240))
    assert set(mapped) == {"weights", "engine", "backend", "device", "precision", "engine_cache", "resize",
                           "input_size", "thresholds", "max_pixels", "postprocess", "threads", "int8"}


def test_a_command_without_the_int8_group_refuses_int8_in_one_line():
    parser = argparse.ArgumentParser()
    group = options.DetectorFlags(int8=False).add(parser)
    with pytest.raises(RetinaFaceError, match="does not take"):
        group.parse(parser.parse_args(["--weights", "w.pth", "--precision", "int8"]))


@pytest.mark.parametrize("text", ["cpu:5", "cuda:", "cuda:-1", "tpu", "cuda:0:1"])
def test_device_type_refuses_malformed_names(text):
    with pytest.raises(argparse.ArgumentTypeError, match="device must be"):
        options.device(text)


@pytest.mark.parametrize("text, expected", [("auto", "auto"), ("CPU", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1")])
def test_device_type_accepts_and_normalises(text, expected):
    assert options.device(text) == expected


@pytest.mark.parametrize("text", ["-1e-9", "nan", "inf", "x"])
def test_non_negative_refuses_negative_and_non_finite(text):
    with pytest.raises(argparse.ArgumentTypeError, match="finite number ≥ 0"):
        options.non_negative(text)


def test_every_numeric_flag_of_the_groups_is_checked_while_parsing():
    """No group flag is a bare int/float: each has a checking type (or choices)."""
    parser = argparse.ArgumentParser()
    options.DetectorFlags(int8=False).add(parser)
    unchecked = [a.option_strings[0] for a in parser._actions
                 if a.type in (int, float) or (a.type is None and a.nargs is None and a.choices is None
                                              and a.const is None and a.dest not in ("weights", "engine", "engine_cache", "help"))]
    assert unchecked == []
