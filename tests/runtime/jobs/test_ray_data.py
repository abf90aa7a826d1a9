"""The Ray Data recipe on this machine's CPUs: actors with num_gpus=0, the real network, detect's records.

Skipped with the reason where Ray Data is not installed (``pip install '.[ray]'``), failed instead under
``RETINAFACE_REQUIRE_RAY=1`` (CI installs the extra and sets it).
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.jobs.ray_data import detect_dataset, import_ray, write_records

OPTIONS = {"backend": "torch", "device": "cpu", "resize": "stretch", "input_size": (320, 320)}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray with 4 logical CPUs on the 2 real cores: one per actor (read_threads=1), and room for the tasks
    reading the files (actors holding every CPU would leave the reads none: Ray then waits for ever)."""
    try:
        ray = import_ray()
    except RetinaFaceError as missing:
        if os.environ.get("RETINAFACE_REQUIRE_RAY") == "1":
            pytest.fail(f"{missing} (RETINAFACE_REQUIRE_RAY=1)")
        pytest.skip(str(missing))
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def photos(photos):
    """The shared photos and a file that is no image."""
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return photos


def detect_lines(photos, mnet_pth, tmp_path) -> dict:
    """detect's own records of ``photos`` (one torch thread, as each actor has: its one CPU)."""
    import torch

    from runtime.cli import main as cli

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cli.main(["detect", str(photos), "--weights", str(mnet_pth), "--backend", "torch", "--device", "cpu",
                  "--resize", "stretch", "--input-size", "320x320", "--json-lines", str(tmp_path / "d.jsonl"), "-q"])
    finally:
        torch.set_num_threads(threads)
    return {json.loads(line)["image"]: line for line in (tmp_path / "d.jsonl").read_text().splitlines()}


def test_two_actors_write_the_records_detect_writes(cluster, photos, mnet_pth, tmp_path):
    """Byte for byte, with what decides the last bits on a CPU the same: one thread, one image per call."""
    records = detect_dataset(str(photos), actors=2, num_gpus=0, batch=1, read_threads=1,
                             weights=str(mnet_pth), **OPTIONS)
    assert write_records(records, tmp_path / "r.jsonl") == 5
    ours = {json.loads(line)["image"]: line for line in (tmp_path / "r.jsonl").read_text().splitlines()}
    assert ours == detect_lines(photos, mnet_pth, tmp_path)
    assert "not a readable image" in json.loads(ours[os.path.join(str(photos), "broken.jpg")])["error"]


def test_batches_find_the_faces_of_single_images(cluster, photos, mnet_pth, tmp_path):
    """Four images per call (convolutions over a batch differ from single ones in the last bits on a CPU)."""
    import numpy as np

    rows = {row["image"]: row for row in detect_dataset(str(photos), actors=1, num_gpus=0, batch=4, read_threads=1,
                                                        weights=str(mnet_pth), **OPTIONS).iter_rows()}
    single = detect_lines(photos, mnet_pth, tmp_path)
    assert set(rows) == set(single)
    for image, row in rows.items():
        ours, theirs = json.loads(row["record"]), json.loads(single[image])
        assert row["faces"] == len(ours["faces"]) == len(theirs["faces"]) and row["error"] == theirs.get("error")
        scores = np.array([[face["score"] for face in r["faces"]] for r in (ours, theirs)])
        assert np.abs(scores[0] - scores[1]).max(initial=0) <= 1e-4
    assert rows[os.path.join(str(photos), "crowd_1024x624.jpg")]["faces"] > 10


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # what an interpreter without Ray finds
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(RetinaFaceError, match=r"the Ray Data recipe \(runtime.jobs.ray_data\) needs the 'ray' extra.*"
                                              r"but ray(\.data)? is not installed: pip install '\.\[ray\]'"):
        import_ray()


def test_the_cluster_script_writes_detect_records(cluster, photos, mnet_pth, tmp_path):
    """tools/ray_detect.py, run as on a cluster (here: the local Ray of the fixture), actors on CPUs."""
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("ray_detect", REPO / "tools" / "ray_detect.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "faces.jsonl"
    assert script.main(["--images", str(photos), "--out", str(out), "--weights", str(mnet_pth), "--backend",
                        "torch", "--device", "cpu", "--num-gpus", "0", "--actors", "2", "--read-threads", "1",
                        "--batch", "1", "--resize", "stretch"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(os.path.basename(r["image"]) for r in records) == sorted(os.listdir(photos))
    assert script.main(["--images", str(photos), "--out", str(out), "--weights", str(mnet_pth)]) == 1  # no --force
