"""File output: writability checked before work, one-line write errors, umask permissions, streams, stale parts."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from retinaface_trt import fileio
from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.fileio import atomic_write, check_writable, write_text_atomic

REPO = Path(__file__).resolve().parents[2]


def test_folder_as_output_file_is_refused(tmp_path):
    with pytest.raises(RetinaFaceError, match="it is a folder"):
        check_writable(tmp_path, force=True)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_read_only_folder_is_refused_before_any_work(tmp_path, read_only, code):
    folder = read_only(tmp_path / "ro", code)
    with pytest.raises(RetinaFaceError, match=f"cannot write {folder / 'out.json'}: {os.strerror(code)}"):
        check_writable(folder / "out.json")


def test_save_dir_under_read_only_parent_is_refused(tmp_path, read_only):
    parent = read_only(tmp_path / "ro")
    with pytest.raises(RetinaFaceError, match="Permission denied"):
        fileio.check_output_dir(parent / "annotated" / "deeper")
    assert not (parent / "annotated").exists()


def test_save_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RetinaFaceError, match="is a file"):
        fileio.check_output_dir(tmp_path / "f")


def test_checks_leave_no_file_behind(tmp_path):
    check_writable(tmp_path / "out.json")
    fileio.check_output_dir(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_an_output_file_in_missing_folders_gets_them_when_written_as_save_dir_does(tmp_path, read_only):
    target = tmp_path / "new" / "deep" / "out.json"
    check_writable(target)
    assert list(tmp_path.iterdir()) == []            # the check creates nothing
    write_text_atomic(target, "{}")
    assert target.read_text() == "{}"
    parent = read_only(tmp_path / "ro")
    with pytest.raises(RetinaFaceError, match="Permission denied"):
        check_writable(parent / "new" / "out.json")   # the nearest existing folder is tried
    (tmp_path / "plain").write_text("x")
    with pytest.raises(RetinaFaceError, match="plain is a file, not a folder"):
        check_writable(tmp_path / "plain" / "new" / "out.json")


def test_os_error_while_writing_is_one_line_naming_the_path(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RetinaFaceError, match=f"^cannot write {target}: No space left on device$"):
        with atomic_write(target) as handle:
            handle.write("partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


def test_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    target.chmod(0o604)
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o604


def test_dash_is_standard_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_writable("-") == Path("-")
    write_text_atomic("-", "[1, 2]\n", force=False)
    assert capsys.readouterr().out == "[1, 2]\n" and list(tmp_path.iterdir()) == []


def test_dev_stdout_is_written_in_place(capfd):
    before = os.lstat("/dev/stdout")
    assert check_writable("/dev/stdout", force=False) == Path("/dev/stdout")   # no --force needed
    write_text_atomic("/dev/stdout", "hello\n", force=False)
    after = os.lstat("/dev/stdout")
    assert capfd.readouterr().out == "hello\n" and (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


def test_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen([sys.executable, "-c", f"print(open({str(fifo)!r}).read(), end='')"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert check_writable(fifo) == fifo
        write_text_atomic(fifo, "through the pipe")
        assert reader.communicate(timeout=30)[0] == "through the pipe"
    finally:
        reader.kill()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from retinaface_trt.fileio import atomic_write
    with atomic_write(sys.argv[1], "w") as handle:
        handle.write("half")
        handle.flush()
        print("writing", flush=True)
        time.sleep(120)
""")


def _killed_writer_part(target: Path) -> Path:
    """Start a writer of ``target``, kill it with SIGKILL mid-write, return the part file it left."""
    writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.kill()
    writer.wait(timeout=30)
    [part] = [p for p in target.parent.iterdir() if p.name.endswith(".part")]
    return part


def test_part_left_by_kill_9_is_removed_by_the_next_run(tmp_path):
    part = _killed_writer_part(tmp_path / "faces.json")
    assert part.name.startswith(".faces.json.") and not (tmp_path / "faces.json").exists()
    check_writable(tmp_path / "other.json")   # the next run writing to that folder
    assert list(tmp_path.iterdir()) == []


def test_part_left_by_kill_9_is_removed_from_a_save_dir(tmp_path):
    _killed_writer_part(tmp_path / "crowd.jpg")
    fileio.check_output_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_part_being_written_is_kept(tmp_path):
    with atomic_write(tmp_path / "a.json") as handle:
        handle.write("in progress")
        assert fileio.remove_stale_parts(tmp_path) == []
        check_writable(tmp_path / "b.json")
        [part] = list(tmp_path.iterdir())
    assert (tmp_path / "a.json").read_text() == "in progress" and not part.exists()


def test_locked_part_of_another_namespace_is_kept(tmp_path):
    """A part whose pid is not running here but whose lock is held (a writer on another host or in another
    PID namespace sharing the folder) is left alone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    part = tmp_path / f".x.json.{dead.pid}.0123abcd.part"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, time
        fd = os.open({str(part)!r}, os.O_WRONLY | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(120)""")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert fileio.remove_stale_parts(tmp_path) == [] and part.exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert fileio.remove_stale_parts(tmp_path) == [part] and not part.exists()


def test_other_dot_files_are_never_removed(tmp_path):
    keep = [tmp_path / ".notes.part", tmp_path / ".a.json.abc.part", tmp_path / "a.1.0123abcd.part"]
    for path in keep:
        path.write_text("mine")
    assert fileio.remove_stale_parts(tmp_path) == [] and all(p.exists() for p in keep)
