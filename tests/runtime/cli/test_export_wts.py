"""``retinaface-trt export-wts`` called in-process through ``main([...])``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from runtime.cli.main import main
from wts_export.weights import load_weights
from wts_export.wts import read_wts


@pytest.fixture(scope="module")
def exported(mnet_pth, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "mnet.wts"
    assert main(["export-wts", str(mnet_pth), str(out)]) == 0
    return out


def test_export_matches_checkpoint(exported, mnet_pth):
    from_pth, from_wts = load_weights(mnet_pth), read_wts(exported)
    assert list(from_wts) == list(from_pth)
    assert all(np.array_equal(from_wts[k], from_pth[k].reshape(-1)) for k in from_pth)


def test_prints_one_line_summary(mnet_pth, tmp_path, capsys):
    out = tmp_path / "m.wts"
    main(["export-wts", str(mnet_pth), str(out)])
    weights = load_weights(mnet_pth)
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    assert f"{len(weights)} entries" in line and f"{sum(w.size for w in weights.values()):,} values" in line
    assert "mobilenet0.25" in line and str(out) in line


def test_refuses_to_overwrite(mnet_pth, tmp_path, capsys):
    out = tmp_path / "m.wts"
    out.write_text("keep me")
    assert main(["export-wts", str(mnet_pth), str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "keep me"


def test_force_overwrites(mnet_pth, tmp_path):
    out = tmp_path / "m.wts"
    out.write_text("old")
    assert main(["export-wts", str(mnet_pth), str(out), "--force"]) == 0
    assert len(read_wts(out)) == len(load_weights(mnet_pth))


def test_an_output_in_a_missing_folder_gets_the_folder_as_save_dir_does(mnet_pth, tmp_path):
    assert main(["export-wts", "--weights", str(mnet_pth), str(tmp_path / "absent" / "m.wts")]) == 0
    assert (tmp_path / "absent" / "m.wts").stat().st_size > 0


def test_a_failed_export_makes_no_folder(tmp_path, capsys):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert main(["export-wts", str(tmp_path / "bad.pth"), str(tmp_path / "absent" / "m.wts")]) == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.pth"] and len(capsys.readouterr().err.splitlines()) == 1


def test_unrecognised_weights_are_refused(tmp_path, capsys):
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "other.pth")
    assert main(["export-wts", str(tmp_path / "other.pth"), str(tmp_path / "o.wts")]) == 1
    assert "not a RetinaFace checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o.wts").exists()


def test_pickled_model_is_refused(tmp_path, capsys):
    torch.save(nn.Linear(2, 2), tmp_path / "whole.pth")
    assert main(["export-wts", str(tmp_path / "whole.pth"), str(tmp_path / "o.wts")]) == 1
    assert "model.state_dict()" in capsys.readouterr().err
    assert not (tmp_path / "o.wts").exists()


def test_incomplete_checkpoint_is_refused(mnet_pth, tmp_path, capsys):
    state = torch.load(mnet_pth, map_location="cpu", weights_only=True)
    del state["LandmarkHead.2.conv1x1.bias"]
    torch.save(state, tmp_path / "cut.pth")
    assert main(["export-wts", str(tmp_path / "cut.pth"), str(tmp_path / "o.wts")]) == 1
    assert "LandmarkHead.2.conv1x1.bias" in capsys.readouterr().err
    assert not (tmp_path / "o.wts").exists()


@pytest.mark.parametrize("key", ["body.stage2.0.0.weight", "fpn.merge1.1.running_var"])
def test_nan_in_checkpoint_writes_nothing(mnet_pth, tmp_path, capsys, key):
    state = torch.load(mnet_pth, map_location="cpu", weights_only=True)
    state[key].view(-1)[0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    assert main(["export-wts", str(tmp_path / "nan.pth"), str(tmp_path / "o.wts")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and key in err and "not finite" in err
    assert not (tmp_path / "o.wts").exists()


def test_output_that_is_a_folder_is_refused_before_loading(mnet_pth, tmp_path, capsys):
    (tmp_path / "out.wts").mkdir()
    assert main(["export-wts", str(mnet_pth), str(tmp_path / "out.wts"), "--force"]) == 1
    assert "is a folder" in capsys.readouterr().err and list((tmp_path / "out.wts").iterdir()) == []


def test_read_only_output_folder_is_refused_before_loading(mnet_pth, tmp_path, read_only, monkeypatch, capsys):
    import errno

    read_only(tmp_path, errno.EROFS)
    monkeypatch.setattr("wts_export.weights.checked_state_dict", lambda p: pytest.fail("loaded before the check"))
    assert main(["export-wts", str(mnet_pth), str(tmp_path / "m.wts")]) == 1
    assert capsys.readouterr().err == f"retinaface-trt export-wts: error: cannot write {tmp_path / 'm.wts'}: " \
                                      "Read-only file system\n"
