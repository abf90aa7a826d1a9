"""One convention per flag across the subcommands, and the messages a new user meets first."""

from __future__ import annotations

import io
import json
import sys

import pytest

from runtime import backends
from runtime.cli import main as cli
from runtime.cli.main import SUBCOMMANDS, build_parser

COMMANDS = [module.rsplit(".", 1)[1].replace("_", "-") for module in SUBCOMMANDS]


def subparsers():
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    return {name: sub for name, sub in choices.items()}


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the model is loaded."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(backends, "create_backend", refuse)


def test_every_device_flag_defaults_to_auto():
    defaults = {name: next(a.default for a in sub._actions if "--device" in a.option_strings)
                for name, sub in subparsers().items() if "--device" in sub._option_string_actions}
    assert len(defaults) >= 8 and set(defaults.values()) == {"auto"}, defaults


def test_every_json_flag_takes_a_path_into_one_destination():
    found = {name: sub._option_string_actions["--json"] for name, sub in subparsers().items()
             if "--json" in sub._option_string_actions}
    assert set(found) == {"detect", "benchmark", "compare"}
    assert {a.dest for a in found.values()} == {"json_path"} and all(a.metavar == "OUT.json" for a in found.values())
    assert all("--force" in subparsers()[name]._option_string_actions for name in found)


def test_every_command_taking_weights_takes_dash_dash_weights():
    takes = [name for name, sub in subparsers().items() if "--weights" in sub._option_string_actions]
    assert set(takes) >= {"export-wts", "build", "export-onnx", "detect", "evaluate", "compare", "benchmark",
                          "serve", "export-triton", "selftest"}


@pytest.mark.parametrize("name", ["export-wts", "build", "export-onnx", "detect", "serve", "export-triton", "evaluate"])
def test_no_help_text_shows_raw_markup(name):
    text = subparsers()[name].format_help()
    assert "``" not in text


@pytest.mark.parametrize("name", ["serve", "export-triton"])
def test_commands_that_draw_nothing_do_not_say_drawn(name):
    assert "drawn" not in subparsers()[name]._option_string_actions["--vis-threshold"].help
    assert "drawn" in subparsers()["detect"]._option_string_actions["--vis-threshold"].help


@pytest.mark.parametrize("argv", [["export-wts", "--weights", "{pth}", "{out}/m.wts"], ["export-wts", "{pth}", "{out}/m.wts"]])
def test_export_wts_takes_the_weights_as_a_flag_or_as_before(argv, mnet_pth, tmp_path, capsys):
    argv = [a.format(pth=mnet_pth, out=tmp_path) for a in argv]
    assert cli.main(argv) == 0 and (tmp_path / "m.wts").is_file()


def test_weights_given_twice_is_a_usage_error(mnet_pth, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export-wts", "--weights", str(mnet_pth), str(mnet_pth), str(tmp_path / "m.wts")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "given twice" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_build_names_dash_dash_weights_when_no_model_is_given(tmp_path, capsys):
    assert cli.main(["build", "-o", str(tmp_path / "m.engine")]) == 1
    assert "--weights W (.wts/.pth) or --onnx MODEL.onnx" in capsys.readouterr().err


def test_serve_batches_one_image_on_a_cpu_and_sixteen_on_a_gpu(monkeypatch):
    import torch

    from runtime.cli import serve
    from runtime.device import resolve_device

    parser = build_parser()

    def batch(*flags):
        args = cli.parse_args(parser, ["serve", "--weights", "w.pth", *flags])
        return serve.serve_settings(args).batch_for(resolve_device(args.device))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert batch() == 1 and batch("--max-batch", "8") == 8
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert batch() == 16 and batch("--max-batch", "8") == 8


def test_no_model_names_the_flags(no_model, shared_dir, capsys):
    assert cli.main(["detect", str(shared_dir / "images" / "astronaut_512x512.png")]) == 1
    err = capsys.readouterr().err
    assert "no model given: pass --weights W" in err and "--engine E" in err


def test_a_missing_input_is_said_before_the_model_loads(no_model, tmp_path, capsys):
    assert cli.main(["detect", str(tmp_path / "nope.jpg"), "--weights", "w.pth", "-q"]) == 1
    assert f"{tmp_path / 'nope.jpg'}: no such file; check the path" in capsys.readouterr().err


def test_json_into_new_folders_is_written_there(no_model, tmp_path, capsys):
    target = tmp_path / "new" / "deep" / "faces.json"
    assert cli.main(["detect", str(tmp_path / "nope.jpg"), "--weights", "w.pth", "--json", str(target), "-q"]) == 1
    assert json.loads(target.read_text())[0]["error"].endswith("no such file; check the path")


def test_origin_size_of_the_original_maps_to_its_own_size_or_says_why_not(capsys):
    parser = build_parser()
    assert cli.parse_args(parser, ["evaluate", "--images", "i", "--ground-truth", "g",
                                   "--origin_size", "True"]).resize == "original"
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(parser, ["detect", "a.jpg", "--origin_size", "False"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "1600-pixel short side" in err and "--resize stretch or letterbox" in err


def test_a_closed_standard_output_ends_quietly(monkeypatch, capsys):
    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            raise io.UnsupportedOperation("fileno")

    from runtime.cli import export_wts

    def prints(args):
        print("[", file=sys.stdout)
        return 0

    monkeypatch.setattr(export_wts, "run", prints)
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["export-wts", "a.pth", "b.wts"]) == 141
    assert capsys.readouterr().err == ""
