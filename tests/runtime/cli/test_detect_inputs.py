"""expand_inputs: files, folders and glob patterns → (path, error) jobs, in order."""

from __future__ import annotations

from runtime.cli.detect import expand_inputs


def _tree(root, names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    return root


def test_a_double_star_pattern_reaches_any_depth(tmp_path):
    names = ("a/x.jpg", "a/deep/y.png", "b/z.jpg", "top.jpg")
    root = _tree(tmp_path, names)
    found = [path for path, _ in expand_inputs([str(root / "**" / "*.*")])]
    assert sorted(found) == sorted(str(root / n) for n in names)


def test_a_folder_of_subfolders_only_says_how_to_include_them(tmp_path):
    root = _tree(tmp_path, ("events/0--Parade/x.jpg",))
    ((path, error),) = expand_inputs([str(root / "events")])
    assert "holds no image files" in error and "subfolders are not searched" in error
    assert str(root / "events" / "**" / "*.jpg") in error


def test_an_empty_folder_gets_no_subfolder_hint(tmp_path):
    ((_, error),) = expand_inputs([str(tmp_path)])
    assert "holds no image files" in error and "subfolders" not in error
