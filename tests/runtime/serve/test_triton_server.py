"""The tritonserver launcher's paths, without a server: it runs in its work folder, so relative paths are made
absolute where it is created (a relative repository failed with 'failed to stat file')."""

from __future__ import annotations

from runtime.serve.triton.server import TritonServer


def test_relative_repository_and_work_folder_are_taken_from_the_callers_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = TritonServer(install=None, repository="triton-repo", workdir="work")
    assert server.repository == tmp_path / "triton-repo" and server.workdir == tmp_path / "work"
    assert server.log_path == tmp_path / "work" / "tritonserver.log"
