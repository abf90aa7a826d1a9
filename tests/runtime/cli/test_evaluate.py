"""``retinaface-trt evaluate``: argument checks, a run with a fake detector, and the real end-to-end AP."""

from __future__ import annotations

import json
import sys
import types

import pytest

from network.config import MOBILENET_0_25
from runtime.cli import main as cli

# Original implementation (MobileNet-0.25, CPU float32, detection at 416×416) on val_subset_416.
REFERENCE_AP = {"easy": 0.7248, "medium": 0.6117, "hard": 0.3191}


@pytest.fixture
def main(monkeypatch):
    """``cli.main`` with only this subcommand registered, so the test does not depend on the others."""
    monkeypatch.setattr(cli, "SUBCOMMANDS", ("runtime.cli.evaluate",))
    return cli.main


@pytest.fixture
def subset_args(shared_dir, mnet_pth, tmp_path):
    subset = shared_dir / "widerface" / "val_subset_416"
    return ["evaluate", "--weights", str(mnet_pth), "--images", str(subset / "images"),
            "--ground-truth", str(shared_dir / "widerface" / "ground_truth"),
            "--scale-manifest", str(subset / "manifest.tsv"), "--out", str(tmp_path / "out")]


def test_evaluate_is_registered():
    assert "runtime.cli.evaluate" in cli.SUBCOMMANDS


def test_missing_image_folder_is_a_one_line_error(main, subset_args, tmp_path, capsys):
    args = subset_args[:4] + [str(tmp_path / "nowhere")] + subset_args[5:]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--images" in err and "nowhere" in err


def test_missing_list_file_is_an_error(main, subset_args, tmp_path, capsys):
    assert main(subset_args + ["--list", str(tmp_path / "list.txt")]) == 1
    assert "--list" in capsys.readouterr().err


def test_bad_input_size_is_a_usage_error(main, subset_args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(subset_args + ["--input-size", "640"])
    assert exit_info.value.code == 2 and "WIDTHxHEIGHT" in capsys.readouterr().err


class _SilentDetector:
    """Stands in for runtime.detector.Detector: records its options and finds no face."""

    options: dict = {}
    backend = types.SimpleNamespace(cfg=MOBILENET_0_25)

    @classmethod
    def from_options(cls, **options):
        cls.options = options
        return cls()

    def detect(self, image):
        return []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def test_run_with_fake_detector_writes_summary(main, subset_args, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "runtime.detector", types.SimpleNamespace(Detector=_SilentDetector))
    listing = tmp_path / "two.txt"
    listing.write_text("/0--Parade/0_Parade_Parade_0_102.jpg\n/0--Parade/0_Parade_Parade_0_194.jpg\n")
    assert main(subset_args + ["--list", str(listing), "--backend", "torch"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["images"], summary["easy"], summary["settings"]["backend"]) == (2, 0.0, "torch")
    assert _SilentDetector.options["resize"] == "original"


@pytest.mark.slow
def test_subset_ap_matches_original_implementation(main, subset_args, shared_dir, tmp_path):
    listing = shared_dir / "widerface" / "val_subset_416" / "wider_val_subset.txt"
    assert main(subset_args + ["--list", str(listing), "--backend", "torch", "--device", "cpu"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["faces"] == {"easy": 548, "medium": 1189, "hard": 3477}
    for setting, ap in REFERENCE_AP.items():
        assert summary[setting] == pytest.approx(ap, abs=5e-4), setting


@pytest.fixture
def no_detector(monkeypatch):
    class Refuse:
        @classmethod
        def from_options(cls, **options):
            raise AssertionError("the detector was built")
    monkeypatch.setitem(sys.modules, "runtime.detector", types.SimpleNamespace(Detector=Refuse))


def test_resized_subset_without_manifest_is_refused_before_detecting(main, subset_args, no_detector, tmp_path,
                                                                     capsys):
    without = [a for i, a in enumerate(subset_args) if "--scale-manifest" not in subset_args[max(0, i - 1):i + 1]]
    assert main(without) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reach beyond the image" in err and "pass --scale-manifest" in err
    assert not (tmp_path / "out").exists()


def test_network_other_than_the_weights_is_refused(main, subset_args, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "runtime.detector", types.SimpleNamespace(Detector=_SilentDetector))
    assert main(subset_args + ["--network", "resnet50"]) == 1
    assert "does not match the weights" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_quiet_draws_no_progress_bar(main, subset_args, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "runtime.detector", types.SimpleNamespace(Detector=_SilentDetector))
    listing = tmp_path / "one.txt"
    listing.write_text("/0--Parade/0_Parade_Parade_0_102.jpg\n")
    assert main(subset_args + ["--list", str(listing), "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_output_folder_that_is_a_file_is_refused_before_work(main, subset_args, no_detector, tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    assert main(subset_args) == 1
    assert "is a file; expected a folder" in capsys.readouterr().err
