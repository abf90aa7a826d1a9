"""Outputs under hostile conditions: two writers of one file, resumes with other settings, outputs that name an
input, empty and folder-like output names. Nothing is lost, overwritten or half-written."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.fileio import hold_output
from runtime import backends
from runtime.cli import main as cli
from runtime.jobs.records import RecordStore
from tests.runtime.conftest import ReplayBackend

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def detect(monkeypatch, crowd_reference):
    monkeypatch.setattr(backends, "create_backend", lambda *a, **k: ReplayBackend(crowd_reference))

    def run(*argv):
        return cli.main(["detect", *argv, "--weights", "replayed.pth", "--resize", "stretch", "-q"])
    return run


_HOLDER = textwrap.dedent("""
    import sys
    from retinaface_trt.fileio import hold_output
    with hold_output(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()
""")


@pytest.mark.parametrize("flag", ["--json", "--json-lines"])
def test_a_second_run_on_an_output_another_process_writes_is_refused(detect, photos, tmp_path, capsys, flag):
    out = tmp_path / "out.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert detect(str(photos), flag, str(out)) == 1
    finally:
        holder.communicate("", timeout=30)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} is being written by another run" in err and f"another {flag} file" in err
    assert not out.exists()
    assert detect(str(photos), flag, str(out)) == 0 and out.exists()       # free once the first one ended
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []   # its lock file is gone


def test_a_store_opened_on_a_missing_file_never_truncates_records_another_run_wrote(tmp_path):
    path = tmp_path / "r.jsonl"
    late = RecordStore.open(path)                      # started while the file did not exist
    with RecordStore.open(path) as first:
        first.append({"image": "a.jpg", "faces": []})
    with pytest.raises(RetinaFaceError, match="created by another run while this one ran"):
        late.append({"image": "b.jpg", "faces": []})
    late.close()
    assert path.read_text() == '{"image":"a.jpg","faces":[]}\n'


@pytest.mark.parametrize("changed", [["--vis-threshold", "0.3"], ["--input-size", "320x320"],
                                     ["--confidence-threshold", "0.5"]])
def test_resuming_with_other_settings_is_refused(detect, photos, tmp_path, capsys, changed):
    store = tmp_path / "r.jsonl"
    first = sorted(photos.iterdir())[:2]
    assert detect(*map(str, first), "--json-lines", str(store)) == 0
    before = store.read_text()
    capsys.readouterr()
    assert detect(str(photos), "--json-lines", str(store), *changed) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds records made with other settings" in err
    assert changed[0].lstrip("-").replace("-", "_") in err
    assert store.read_text() == before
    assert detect(str(photos), "--json-lines", str(store)) == 0           # the same settings resume
    assert len(store.read_text().splitlines()) == 4


def test_json_naming_an_input_is_refused_even_with_force(detect, photos, capsys):
    image = sorted(photos.iterdir())[0]
    data = image.read_bytes()
    for flag in ("--json", "--json-lines"):
        assert detect(str(photos), flag, str(image), "--force") == 1
        err = capsys.readouterr().err      # refused as an image name (the JSON flags' own check) or as the input
        assert err.count("\n") == 1 and f"{flag} {image}" in err, err
        assert "is the input" in err or "an image, not a JSON file name" in err, err
    assert image.read_bytes() == data


def test_export_wts_over_its_own_checkpoint_is_refused(mnet_pth, tmp_path, capsys):
    checkpoint = tmp_path / "w.pth"
    checkpoint.write_bytes(mnet_pth.read_bytes())
    assert cli.main(["export-wts", str(checkpoint), str(checkpoint), "--force"]) == 1
    assert "is the input" in capsys.readouterr().err
    assert checkpoint.read_bytes() == mnet_pth.read_bytes()


def test_an_empty_json_name_is_a_usage_error(detect, photos, capsys):
    with pytest.raises(SystemExit) as exit_info:
        detect(str(photos), "--json", "")
    assert exit_info.value.code == 2 and "--json needs a file name, found an empty string" in capsys.readouterr().err


def test_a_json_name_ending_in_a_slash_is_refused(detect, photos, tmp_path, capsys):
    target = tmp_path / "results"
    assert detect(str(photos), "--json", f"{target}/") == 1
    assert "it names a folder; expected a file name such as" in capsys.readouterr().err
    assert not target.exists()
