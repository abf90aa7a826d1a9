"""``retinaface-trt detect`` in-process, over a replay backend (stored outputs of the original)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys

import cv2
import pytest

from runtime.cli import main as cli
from runtime import backends
from tests.runtime.conftest import ReplayBackend


@pytest.fixture
def detect(monkeypatch, crowd_reference):
    """Run ``detect`` with the replay backend; returns main's exit status."""
    monkeypatch.setattr(backends, "create_backend", lambda *a, **k: ReplayBackend(crowd_reference))

    def run(*argv):
        return cli.main(["detect", *argv, "--weights", "replayed.pth", "--resize", "stretch"])
    return run


@pytest.fixture
def crowd_copy(tmp_path, shared_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_dir / "images" / "crowd_1024x624.jpg", folder / "crowd.jpg")
    return folder / "crowd.jpg"


def test_json_record_schema(detect, crowd_copy, tmp_path, crowd_reference):
    out = tmp_path / "out.json"
    assert detect(str(crowd_copy), "--json", str(out)) == 0
    [record] = json.loads(out.read_text())
    expected = crowd_reference["dets_640_in_origin_coords"]
    assert record["image"] == str(crowd_copy) and (record["width"], record["height"]) == (1024, 624)
    assert len(record["faces"]) == int((expected[:, 4] >= 0.6).sum())
    assert set(record["faces"][0]) == {"score", "box", "landmarks"}


def test_vis_threshold_flag_filters(detect, crowd_copy, tmp_path, crowd_reference):
    out = tmp_path / "out.json"
    assert detect(str(crowd_copy), "--json", str(out), "--vis-threshold", "0.1") == 0
    expected = crowd_reference["dets_640_in_origin_coords"]
    assert len(json.loads(out.read_text())[0]["faces"]) == int((expected[:, 4] >= 0.1).sum())


def test_bad_file_in_batch_is_reported_and_others_run(detect, crowd_copy, tmp_path, capsys):
    bad = crowd_copy.parent / "broken.jpg"
    bad.write_bytes(crowd_copy.read_bytes()[:500])
    out = tmp_path / "out.json"
    assert detect(str(crowd_copy.parent), "--json", str(out)) == 1
    records = json.loads(out.read_text())
    assert [os.path.basename(r["image"]) for r in records] == ["broken.jpg", "crowd.jpg"]
    assert "error" in records[0] and len(records[1]["faces"]) > 0
    assert "broken.jpg" in capsys.readouterr().err


def test_missing_file_exits_1_with_one_line(detect, tmp_path, capsys):
    assert detect(str(tmp_path / "absent.jpg")) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "absent.jpg" in errors[0]


def test_glob_input_expands(detect, crowd_copy, tmp_path):
    shutil.copy(crowd_copy, crowd_copy.parent / "second.jpg")
    out = tmp_path / "out.json"
    assert detect(str(crowd_copy.parent / "*.jpg"), "--json", str(out)) == 0
    assert len(json.loads(out.read_text())) == 2


def test_progress_bar_only_for_several_images(detect, crowd_copy, capsys):
    assert detect(str(crowd_copy)) == 0
    assert "1/1" not in capsys.readouterr().err
    assert detect(str(crowd_copy), str(crowd_copy)) == 0
    assert "2/2" in capsys.readouterr().err


def test_save_dir_writes_annotated_copy(detect, crowd_copy, tmp_path):
    assert detect(str(crowd_copy), "--save-dir", str(tmp_path / "vis")) == 0
    drawn = cv2.imread(str(tmp_path / "vis" / "crowd.jpg"))
    assert drawn.shape == (624, 1024, 3) and (drawn != cv2.imread(str(crowd_copy))).any()


def test_existing_json_needs_force(detect, crowd_copy, tmp_path, capsys):
    out = tmp_path / "out.json"
    out.write_text("keep")
    assert detect(str(crowd_copy), "--json", str(out)) == 1
    assert out.read_text() == "keep" and "--force" in capsys.readouterr().err
    assert detect(str(crowd_copy), "--json", str(out), "--force") == 0


def test_model_error_leaves_no_output(crowd_copy, tmp_path, capsys):
    out, vis = tmp_path / "out.json", tmp_path / "vis"
    status = cli.main(["detect", str(crowd_copy), "--weights", str(tmp_path / "absent.pth"),
                       "--backend", "torch", "--json", str(out), "--save-dir", str(vis)])
    assert status == 1 and not out.exists() and not vis.exists()
    assert capsys.readouterr().err.count("\n") == 1


def test_max_pixels_flag_refuses_large_image(detect, crowd_copy, capsys):
    assert detect(str(crowd_copy), "--max-pixels", "1000") == 1
    assert "exceeds the limit" in capsys.readouterr().err


def test_bad_input_size_is_a_usage_error(detect, crowd_copy, capsys):
    with pytest.raises(SystemExit) as exit_info:
        detect(str(crowd_copy), "--input-size", "big")
    assert exit_info.value.code == 2 and "WIDTHxHEIGHT" in capsys.readouterr().err


def test_unreadable_folder_is_reported(detect, crowd_copy, tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_listdir = os.listdir

    def listdir(path):  # chmod 0 does not stop root, so the refusal is simulated
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied")
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    assert detect(str(locked), str(crowd_copy)) == 1
    assert "cannot read folder" in capsys.readouterr().err


# ---- outputs: checked before work, stdout, summary, permissions, save-dir reuse ----------------------------

@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the model is loaded (what must be refused before any work)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(backends, "create_backend", refuse)


def test_json_dash_goes_to_stdout(detect, crowd_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert detect(str(crowd_copy), "--json", "-") == 0
    captured = capsys.readouterr()
    [record] = json.loads(captured.out)
    assert record["image"] == str(crowd_copy) and not (tmp_path / "-").exists()
    assert "1 image," in captured.err


def test_json_dev_stdout_is_accepted(detect, crowd_copy, capfd):
    assert detect(str(crowd_copy), "--json", "/dev/stdout") == 0
    assert json.loads(capfd.readouterr().out)[0]["width"] == 1024


def test_one_summary_line_by_default(detect, crowd_copy, tmp_path, capsys):
    out = tmp_path / "out.json"
    assert detect(str(crowd_copy), str(crowd_copy), "--json", str(out)) == 0
    faces = sum(len(r["faces"]) for r in json.loads(out.read_text()))
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(rf"2 images, {faces} faces, \d+\.\d ms/image", last), last


def test_the_summary_says_where_dash_s_wrote_the_copies(detect, crowd_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert detect(str(crowd_copy), "-s") == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(f"; annotated copies in {os.path.join('out', 'annotated')}"), last
    assert (tmp_path / "out" / "annotated" / crowd_copy.name).is_file()


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_nothing_on_success(detect, crowd_copy, capsys, where):
    argv = [str(crowd_copy), str(crowd_copy), "-q"] if where == "after" else [str(crowd_copy), str(crowd_copy)]
    status = detect(*argv) if where == "after" else cli.main(
        ["-q", "detect", *argv, "--weights", "replayed.pth", "--resize", "stretch"])
    assert status == 0 and capsys.readouterr().err == ""


def test_verbose_counts_before_and_after_the_subcommand():
    parser = cli.build_parser()
    assert cli.parse_args(parser, ["-v", "detect", "a.jpg", "-vv"]).verbose == 3
    assert cli.parse_args(parser, ["detect", "a.jpg", "-v"]).verbose == 1


def test_unknown_flag_is_one_line_with_a_hint_not_the_usage(detect, crowd_copy, capsys):
    with pytest.raises(SystemExit) as exit_info:
        detect(str(crowd_copy), "--bogus")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "usage:" not in err and len(err.splitlines()) == 1
    assert err.startswith("retinaface-trt detect: error: unrecognized arguments: --bogus (")
    assert "`retinaface-trt detect --help` lists the flags" in err


def test_a_mistyped_flag_gets_the_flag_it_resembles(detect, crowd_copy, capsys):
    with pytest.raises(SystemExit) as exit_info:
        detect(str(crowd_copy), "--wieghts", "w.pth")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "did you mean --weights?" in err


def test_json_naming_a_folder_is_refused_before_work(no_model, crowd_copy, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    assert cli.main(["detect", str(crowd_copy), "--weights", "w.pth", "--json", str(tmp_path / "out")]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_json_in_a_read_only_folder_is_refused_before_work(no_model, crowd_copy, tmp_path, read_only, capsys):
    locked = read_only(tmp_path / "locked")
    assert cli.main(["detect", str(crowd_copy), "--weights", "w.pth", "--json", str(locked / "o.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write {locked / 'o.json'}: Permission denied" in err


def test_save_dir_under_a_read_only_parent_is_refused_before_work(no_model, crowd_copy, tmp_path, read_only, capsys):
    locked = read_only(tmp_path / "locked")
    assert cli.main(["detect", str(crowd_copy), "--weights", "w.pth", "--save-dir", str(locked / "vis")]) == 1
    assert "Permission denied" in capsys.readouterr().err and not (locked / "vis").exists()


def test_outputs_have_the_usual_permissions(detect, crowd_copy, tmp_path):
    old = os.umask(0o022)
    try:
        assert detect(str(crowd_copy), "--json", str(tmp_path / "o.json"), "--save-dir", str(tmp_path / "vis")) == 0
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "o.json", tmp_path / "vis" / "crowd.jpg")}
    assert modes == {0o644}


def test_save_dir_is_reused_replacing_only_this_runs_copies(detect, crowd_copy, tmp_path):
    vis = tmp_path / "vis"
    vis.mkdir()
    (vis / "notes.txt").write_text("mine")
    (vis / "crowd.jpg").write_bytes(b"from an earlier run")
    assert detect(str(crowd_copy), "--save-dir", str(vis)) == 0
    assert detect(str(crowd_copy), "--save-dir", str(vis)) == 0
    assert cv2.imread(str(vis / "crowd.jpg")).shape == (624, 1024, 3)
    assert sorted(p.name for p in vis.iterdir()) == ["crowd.jpg", "notes.txt"] and (vis / "notes.txt").read_text() == "mine"


def test_save_dir_holding_an_input_is_refused(no_model, crowd_copy, capsys):
    before = crowd_copy.read_bytes()
    assert cli.main(["detect", str(crowd_copy), "--weights", "w.pth", "--save-dir", str(crowd_copy.parent)]) == 1
    assert "would replace it" in capsys.readouterr().err and crowd_copy.read_bytes() == before


def test_stale_part_of_a_killed_run_is_removed(detect, crowd_copy, tmp_path):
    vis = tmp_path / "vis"
    vis.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = vis / f".crowd.jpg.{dead.pid}.0123abcd.part"   # as left by kill -9 during a write
    stale.write_bytes(b"half")
    assert detect(str(crowd_copy), "--save-dir", str(vis)) == 0
    assert sorted(p.name for p in vis.iterdir()) == ["crowd.jpg"]


def test_device_with_a_cpu_index_is_a_usage_error(detect, crowd_copy, capsys):
    with pytest.raises(SystemExit) as exit_info:
        detect(str(crowd_copy), "--device", "cpu:5")
    assert exit_info.value.code == 2 and "the CPU takes no index" in capsys.readouterr().err


# ---- detect.py's flag spellings ----------------------------------------------------------------------------

DETECT_PY = ["-m", "w.pth", "--cpu", "--confidence_threshold", "0.3", "--top_k", "100", "--nms_threshold", "0.25",
             "--keep_top_k", "10", "--vis_thres", "0.7", "--network", "mobile0.25", "-s"]
OURS = ["--weights", "w.pth", "--device", "cpu", "--confidence-threshold", "0.3", "--top-k", "100",
        "--nms-threshold", "0.25", "--keep-top-k", "10", "--vis-threshold", "0.7", "--save-dir",
        os.path.join("out", "annotated")]


def test_detect_py_spellings_mean_our_flags():
    parser = cli.build_parser()
    theirs, ours = (vars(cli.parse_args(parser, ["detect", "a.jpg", *argv])) for argv in (DETECT_PY, OURS))
    assert theirs.pop("network") == "mobile0.25" and ours.pop("network") is None
    assert theirs == ours


@pytest.mark.parametrize("flag, value", [("--confidence_threshold", "nan"), ("--vis_thres", "1.5"),
                                         ("--top_k", "0"), ("--keep_top_k", "-5")])
def test_detect_py_spellings_are_checked_like_ours(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["detect", "a.jpg", "--weights", "w.pth", flag, value])
    assert exit_info.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


def test_detect_py_command_line_runs(monkeypatch, crowd_reference, crowd_copy, tmp_path):
    monkeypatch.setattr(backends, "create_backend", lambda *a, **k: ReplayBackend(crowd_reference))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["detect", str(crowd_copy), *DETECT_PY, "--resize", "stretch"]) == 0
    assert cv2.imread(str(tmp_path / "out" / "annotated" / "crowd.jpg")).shape == (624, 1024, 3)


def test_network_other_than_the_weights_is_refused(detect, crowd_copy, tmp_path, capsys):
    out, vis = tmp_path / "o.json", tmp_path / "vis"
    assert detect(str(crowd_copy), "--network", "resnet50", "--json", str(out), "--save-dir", str(vis)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--network resnet50 does not match the weights, which hold a mobilenet0.25" in err
    assert not out.exists() and not vis.exists()


@pytest.mark.parametrize("flag, value", [("--confidence-threshold", "-1"), ("--confidence-threshold", "1.5"),
                                         ("--confidence-threshold", "nan"), ("--nms-threshold", "2"),
                                         ("--top-k", "0"), ("--keep-top-k", "-5"), ("--vis-threshold", "nan"),
                                         ("--max-pixels", "-1"), ("--input-size", "100000x100000")])
def test_out_of_range_values_of_the_issue_are_usage_errors(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["detect", "a.jpg", "--weights", "w.pth", flag, value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"retinaface-trt detect: error: argument {flag}:" in err


# ---- large folders: --json-lines (resumable), --batch, --devices, progress, bounded memory ------------------

@pytest.fixture
def replayed(monkeypatch, crowd_reference):
    """Like ``detect``, also giving the backends made (``.batches``: what each was asked to run)."""
    made = []
    monkeypatch.setattr(backends, "create_backend",
                        lambda *a, **k: made.append(ReplayBackend(crowd_reference)) or made[-1])

    def run(*argv):
        return cli.main(["detect", *argv, "--weights", "replayed.pth", "--resize", "stretch"])
    run.backends = made
    return run


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_rerun_with_json_lines_skips_what_is_recorded(replayed, photos, tmp_path, capsys):
    store, full = tmp_path / "r.jsonl", tmp_path / "full.json"
    assert replayed(str(photos), "--json", str(full)) == 0
    first_two = sorted(photos.iterdir())[:2]
    assert replayed(*map(str, first_two), "--json-lines", str(store)) == 0
    capsys.readouterr()
    assert replayed(str(photos), "--json-lines", str(store), "--json", str(tmp_path / "o.json")) == 0
    assert sum(len(b) for b in replayed.backends[-1].batches) == 2          # only the two not recorded ran
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"; 2 already in {store}")
    assert json.loads((tmp_path / "o.json").read_text()) == json.loads(full.read_text())
    assert _lines(store) == json.loads(full.read_text())                     # in input order, each once


def test_a_killed_run_resumes_into_the_file_an_uninterrupted_run_writes(replayed, photos, tmp_path):
    whole, store = tmp_path / "whole.jsonl", tmp_path / "r.jsonl"
    assert replayed(str(photos), "--json-lines", str(whole)) == 0
    lines = whole.read_text().splitlines(keepends=True)
    store.write_text(lines[0] + lines[1] + lines[2][:40])                    # killed while writing the third
    assert replayed(str(photos), "--json-lines", str(store)) == 0
    assert store.read_text() == whole.read_text()


def test_json_lines_dash_streams_to_standard_output(replayed, photos, capsys):
    assert replayed(str(photos), "--json-lines", "-", "-q") == 0
    out = capsys.readouterr().out.splitlines()
    assert [os.path.basename(json.loads(line)["image"]) for line in out] == sorted(os.listdir(photos))


def test_failed_inputs_recorded_earlier_still_fail_the_job(replayed, photos, tmp_path, capsys):
    (photos / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    store = tmp_path / "r.jsonl"
    assert replayed(str(photos), "--json-lines", str(store)) == 1
    capsys.readouterr()
    assert replayed(str(photos), "--json-lines", str(store)) == 1             # nothing to do, still a failed job
    err = capsys.readouterr().err
    assert "1 of 5 inputs failed (1 recorded earlier)" in err and replayed.backends[-1:] == replayed.backends[:1]


@pytest.mark.parametrize("argv, message", [
    (["--device", "cpu", "--devices", "cpu,cpu"], "--device and --devices exclude each other"),
    (["--json", "-", "--json-lines", "/dev/stdout"], "--json and --json-lines must be different files"),
    (["--batch", "0"], "argument --batch: the batch must be an integer ≥ 1"),
    (["--batch", "1025"], "argument --batch: the batch must be at most 1024"),
    (["--devices", "cuda:0,,cpu"], "argument --devices: expected all, or devices separated by commas"),
    (["--read-threads", "0"], "argument --read-threads")])
def test_flags_of_large_folders_refused_as_usage_errors(no_model, crowd_copy, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["detect", str(crowd_copy), "--weights", "w.pth", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_devices_that_do_not_exist_stop_the_command_before_any_output(no_model, crowd_copy, tmp_path, capsys,
                                                                       monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "o.json"
    assert cli.main(["detect", str(crowd_copy), "--weights", "w.pth", "--devices", "cuda:0,cuda:1",
                     "--json", str(out), "--json-lines", str(tmp_path / "r.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PyTorch sees no CUDA GPU" in err and list(tmp_path.iterdir()) == [crowd_copy.parent]


def test_progress_line_shows_images_per_second(replayed, photos, capsys):
    assert replayed(str(photos)) == 0
    assert re.search(r"detect 4/4 \[#+\] 100%  \d+\.\d images/s, 0:00:00 left", capsys.readouterr().err)


@pytest.mark.parametrize("batch", [1, 3])
def test_batch_bounds_the_images_per_call(replayed, photos, batch):
    """(Which images share a call depends on decoding times: tests/runtime/jobs/test_pipeline.py pins that.)"""
    assert replayed(str(photos), "--batch", str(batch)) == 0
    sizes = [len(b) for b in replayed.backends[0].batches]
    assert sum(sizes) == 4 and max(sizes) <= batch


def test_records_do_not_pile_up_whatever_the_number_of_images(replayed, crowd_copy, tmp_path, monkeypatch):
    """Records are written as they are final: the most alive at once does not grow with the folder."""
    from runtime.jobs import tasks
    from tests.runtime.jobs.fakes import LiveCount

    class Record(dict):      # a dict that can be counted through weak references
        pass

    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(crowd_copy)), (64, 40)))
    peaks, real = [], tasks.report
    for count in (10, 60):
        folder = tmp_path / f"n{count}"
        folder.mkdir()
        for i in range(count):
            os.symlink(small, folder / f"{i:04d}.png")
        live = LiveCount()
        def tracked(*args, **kwargs):
            shown = real(*args, **kwargs)
            shown.record = live.track(Record(shown.record))
            return shown

        monkeypatch.setattr(tasks, "report", tracked)
        assert replayed(str(folder), "--json", str(tmp_path / f"o{count}.json"), "--batch", "4", "-q") == 0
        assert len(json.loads((tmp_path / f"o{count}.json").read_text())) == count
        peaks.append(live.peak)
    assert peaks[1] <= 2 * 4 + 2 and peaks[0] > 0, peaks


def test_a_lost_worker_is_one_line_saying_how_to_resume(crowd_copy, tmp_path, monkeypatch, capsys):
    from runtime.jobs import workers
    from runtime.jobs.pipeline import InProcess
    from tests.runtime.jobs.fakes import FakeDetector

    class DyingPool(InProcess):
        """Answers the first task, then its worker is gone."""

        def __init__(self, devices, factory, settings):
            super().__init__(FakeDetector(), settings)

        def run(self, todo):
            yield next(iter(super().run(todo[:1])))
            raise workers.WorkerLost("the worker on cpu ended unexpectedly (killed by SIGKILL: out of memory?) "
                                     "with 1 image(s) not answered")

    monkeypatch.setattr(workers, "WorkerPool", DyingPool)
    shutil.copy(crowd_copy, crowd_copy.parent / "second.jpg")
    store, out = tmp_path / "r.jsonl", tmp_path / "o.json"
    assert cli.main(["detect", str(crowd_copy.parent), "--weights", "w.pth", "--devices", "cpu,cpu",
                     "--json-lines", str(store), "--json", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "killed by SIGKILL" in err
    assert f"the records in {store} are kept: run the same command again to do the rest" in err
    assert len(_lines(store)) == 1 and not out.exists()


@pytest.mark.slow
def test_two_cpu_workers_write_what_one_device_writes(mnet_pth, photos, tmp_path, monkeypatch):
    """The real network in two spawned workers: the same --json, byte for byte, as in this process with the
    same number of torch threads (each CPU worker gets one of this machine's two CPUs; convolutions summed by
    another number of threads differ in the last bits: up to 2.4e-4 px here)."""
    import torch

    for name in ("x.jpg", "y.jpg"):          # six inputs: both workers get some
        os.symlink(photos / "crowd_1024x624.jpg", photos / name)
    common = ["detect", str(photos), "--weights", str(mnet_pth), "--backend", "torch", "--resize", "stretch",
              "--input-size", "320x320", "-q", "--read-threads", "1"]
    threads = torch.get_num_threads()
    workers = 2 if len(os.sched_getaffinity(0)) >= 2 else 1
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))
    try:
        assert cli.main([*common, "--device", "cpu", "--json", str(tmp_path / "one.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert cli.main([*common, "--devices", "cpu,cpu", "--json", str(tmp_path / "two.json"),
                     "--json-lines", str(tmp_path / "two.jsonl")]) == 0
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert _lines(tmp_path / "two.jsonl") == json.loads((tmp_path / "one.json").read_text())
