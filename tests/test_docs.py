"""The README's and docs' examples, run: a removed flag, a wrong example or a command that fails makes CI fail.

Two checks:

* **Every command line in the docs names flags that exist.** Each ``retinaface-trt CMD …`` line of a fenced code
  block, and each inline code span that starts with a subcommand (`` `compare --precision int8` ``), is read
  token by token: every ``--flag`` must be one that CMD's parser takes (hidden aliases of the original's spellings
  included), and a value written after a flag with choices must be one of them. No command runs; this costs
  well under a second.
* **Marked blocks run.** An HTML comment on the line just before a fence marks the block (docs/architecture.md,
  "Examples that run", is the reference):

  ``<!-- doc-test: run -->``
      the shell block runs under ``bash -euo pipefail`` in a fresh folder laid out as a clone after ``.ci/run``:
      ``weights/`` (the checkpoint), ``.venv/bin/retinaface-trt`` (this checkout's CLI, also on ``PATH``) and
      ``../shared`` (the data). Lines of the comment after the first add checks or substitutions:
      ``expect-stderr: TEXT`` / ``expect-stdout: TEXT`` (TEXT appears), ``expect-file: PATH`` (written), and
      ``replace: OLD => NEW``, the only way to substitute a smaller input for a heavy one.
  ``<!-- doc-test: python -->``
      the Python block runs in this process, in that folder; ``before: CODE`` lines run first (to define what
      the snippet takes as given, such as ``image_base64``), ``replace:`` as above.
  ``<!-- doc-test: json-of: COMMAND -->``
      the JSON block is compared with what COMMAND prints: every key of the example with an equal value, lists
      of the example as prefixes of the real ones (an example may show the first face of many), a record for the
      first of a printed list, and numbers equal to the printed digits (half a unit of the last digit, plus 5e-4
      for the differences between backends, which docs/onnx.md measures at about 1.3e-4 px).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runtime.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = "<!-- doc-test:"
FENCE = re.compile(r"^(```+)[\w-]*\n(.*?)^\1$", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
ROUTE_TOLERANCE = 5e-4      # docs/onnx.md: the routes (executor, ONNX Runtime) agree within about 1.3e-4 px
STOP = {"|", "||", "&&", ";", ">", "2>", "#", "--", "\\"}


@dataclass
class Block:
    path: Path
    line: int
    kind: str
    arg: str
    body: str
    options: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    def values(self, key: str) -> list[str]:
        return [value for k, value in self.options if k == key]

    def text(self) -> str:
        body = self.body
        for rule in self.values("replace"):
            old, _, new = rule.partition("=>")
            assert old.strip() in body, f"{self.name}: replace: {old.strip()!r} is not in the block"
            body = body.replace(old.strip(), new.strip())
        return body


def marked_blocks() -> list[Block]:
    blocks = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        for start, line in enumerate(lines):
            if not line.startswith(MARKER):
                continue
            end = next(i for i in range(start, len(lines)) if "-->" in lines[i])
            comment = [text.replace("-->", "").strip() for text in lines[start:end + 1]]
            kind, _, arg = comment[0][len(MARKER):].strip().partition(" ")
            fence = lines[end + 1] if end + 1 < len(lines) else ""
            assert fence.startswith("```"), f"{path.name}:{end + 2}: a doc-test comment must come just before a fence"
            close = next(i for i in range(end + 2, len(lines)) if lines[i].rstrip() == "```")
            options = [tuple(part.strip() for part in text.split(":", 1)) for text in comment[1:] if text]
            blocks.append(Block(path, end + 3, kind.rstrip(":"), arg.strip(), "\n".join(lines[end + 2:close]) + "\n",
                                options))
    return blocks


BLOCKS = marked_blocks()


# --- flags in every command line of the docs --------------------------------------------------------------------
def subcommands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def command_lines() -> list[tuple[str, str]]:
    """(where, text) of every retinaface-trt command written in the docs, from the subcommand on."""
    found = []
    names = set(subcommands())
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for fence in FENCE.finditer(text):
            code = fence[2].replace("\\\n", " ")
            for offset, line in enumerate(code.splitlines()):
                for start in re.finditer(r"retinaface-trt\s+(?=[a-z])", line):
                    found.append((f"{path.relative_to(REPO)}:{text.count(chr(10), 0, fence.start()) + 2 + offset}",
                                  line[start.end():]))
        for span in INLINE.finditer(FENCE.sub("", text)):
            words = span[1].removeprefix("retinaface-trt ").split()
            if len(words) > 1 and words[0] in names and words[1].startswith("-"):
                found.append((f"{path.relative_to(REPO)}: `{span[1]}`", span[1].removeprefix("retinaface-trt ")))
    return found


def _tokens(text: str) -> list[str]:
    try:
        words = shlex.split(text, comments=True)
    except ValueError:            # an unbalanced quote in prose
        words = text.split()
    tokens = []
    for word in words:
        if word in STOP:
            break
        tokens.append(word.strip("[](),"))
    return tokens


def flag_problems(where: str, text: str, commands: dict) -> list[str]:
    tokens = _tokens(text)
    if tokens and tokens[0].endswith(":"):       # a message (retinaface-trt detect: error: …), not a command
        return []
    if not tokens or tokens[0] not in commands:
        return [] if not tokens or tokens[0].startswith(("-", "<", "$")) or tokens[0].isupper() else \
            [f"{where}: unknown command {tokens[0]!r}"]
    known = commands[tokens[0]]._option_string_actions
    problems = []
    for index, token in enumerate(tokens[1:], start=1):
        flag = token.split("=", 1)[0]
        if not re.fullmatch(r"--?[a-zA-Z][\w-]*", flag):
            continue
        if flag not in known:
            problems.append(f"{where}: {tokens[0]} has no flag {flag}")
            continue
        choices = known[flag].choices
        value = token.split("=", 1)[1] if "=" in token else (tokens[index + 1] if index + 1 < len(tokens) else "")
        for option in value.split("|") if choices and value and not value.startswith("-") else ():
            if re.fullmatch(r"[a-z0-9.+-]+", option) and option not in choices:
                problems.append(f"{where}: {tokens[0]} {flag} takes {', '.join(map(str, choices))}, not {option!r}")
    return problems


def test_every_command_in_the_docs_uses_flags_that_exist():
    commands = subcommands()
    lines = command_lines()
    problems = [p for where, text in lines for p in flag_problems(where, text, commands)]
    assert len(lines) > 60 and not problems, "\n".join(problems)


def test_the_flag_check_finds_a_removed_flag_and_a_wrong_choice():
    commands = subcommands()
    assert flag_problems("x", "compare --weights W --precision int8 a.jpg", commands) == []
    assert flag_problems("x", "compare --weights W --int8 a.jpg", commands) == ["x: compare has no flag --int8"]
    assert flag_problems("x", "detect a.jpg --backend trt", commands)[0].endswith("not 'trt'")
    assert flag_problems("x", "detect a.jpg --backend auto|torch --device cuda:1", commands) == []


# --- marked blocks ----------------------------------------------------------------------------------------------
def test_the_docs_mark_their_examples():
    kinds = [block.kind for block in BLOCKS]
    assert kinds.count("run") >= 2 and kinds.count("python") >= 2 and kinds.count("json-of") >= 1, kinds
    assert all(kind in ("run", "python", "json-of") for kind in kinds), kinds


@pytest.fixture(scope="module")
def clone(tmp_path_factory, shared_dir, mnet_pth) -> Path:
    """A folder laid out as a clone after .ci/run: weights/, .venv/bin/retinaface-trt, ../shared."""
    root = tmp_path_factory.mktemp("docs")
    (root / "shared").symlink_to(shared_dir, target_is_directory=True)
    folder = root / "clone"
    (folder / ".venv" / "bin").mkdir(parents=True)
    (folder / "weights").symlink_to(mnet_pth.parent, target_is_directory=True)
    cli = folder / ".venv" / "bin" / "retinaface-trt"
    cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m runtime.cli.main "$@"\n')
    cli.chmod(0o755)
    return folder


def environment(clone: Path) -> dict:
    return {**os.environ, "PATH": f"{clone / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(REPO), "SHARED": str(clone.parent / "shared"), "OMP_NUM_THREADS": "1"}


def run_shell(text: str, clone: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=clone, env=environment(clone),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "run"], ids=lambda b: b.name)
def test_a_marked_shell_block_runs_as_written(block, clone):
    done = run_shell(block.text(), clone)
    assert done.returncode == 0, f"{block.name} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr
    for text in block.values("expect-stderr"):
        assert text in done.stderr, f"{block.name}: {text!r} not in stderr:\n{done.stderr}"
    for text in block.values("expect-stdout"):
        assert text in done.stdout, f"{block.name}: {text!r} not in stdout:\n{done.stdout[:3000]}"
    for path in block.values("expect-file"):
        assert (clone / path).is_file(), f"{block.name}: {path} was not written"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "python"], ids=lambda b: b.name)
def test_a_marked_python_block_runs_as_written(block, clone, monkeypatch):
    monkeypatch.chdir(clone)
    namespace: dict = {"__name__": "__doc_example__"}
    exec(compile("\n".join(block.values("before")) + "\n" + block.text(), block.name, "exec"), namespace)


class Written(float):
    """A number of a JSON example with the digits it was written with."""

    def __new__(cls, text: str):
        number = super().__new__(cls, text)
        number.decimals = len(text.partition(".")[2].lower().partition("e")[0])
        return number


def differences(example, actual, where: str = "$") -> list[str]:
    """Where ``example`` says something ``actual`` does not (see the module doc)."""
    if isinstance(example, dict):
        if not isinstance(actual, dict):
            return [f"{where}: an object in the example, {type(actual).__name__} in the output"]
        return [d for key, value in example.items()
                for d in (differences(value, actual[key], f"{where}.{key}") if key in actual
                          else [f"{where}.{key}: not in the output"])]
    if isinstance(example, list):
        if not isinstance(actual, list) or len(actual) < len(example):
            return [f"{where}: {len(example)} items in the example, the output has {actual!r:.80}"]
        return [d for i, (e, a) in enumerate(zip(example, actual)) for d in differences(e, a, f"{where}[{i}]")]
    if isinstance(example, Written):
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return [f"{where}: {example} in the example, {actual!r} in the output"]
        allowed = 0.5 * 10.0 ** -example.decimals + ROUTE_TOLERANCE
        return [] if abs(actual - example) <= allowed else [f"{where}: {example} in the example, {actual} in the output"]
    return [] if example == actual else [f"{where}: {example!r} in the example, {actual!r} in the output"]


def test_the_json_comparison_finds_a_wrong_number_and_a_missing_key():
    example = json.loads('{"box": {"x": 70.5, "y": 80.8}, "faces": [{"score": 0.9979}]}', parse_float=Written)
    output = {"box": {"x": 70.54, "y": 50.5}, "faces": [{"score": 0.99786, "id": 0}, {"score": 0.5}]}
    assert differences(example, output) == ["$.box.y: 80.8 in the example, 50.5 in the output"]
    assert differences({"w": Written("1.0")}, {}) == ["$.w: not in the output"]


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "json-of"], ids=lambda b: b.name)
def test_a_json_example_is_what_its_command_prints(block, clone):
    done = run_shell(block.arg, clone)
    assert done.returncode == 0, f"{block.name}: {block.arg} failed:\n{done.stderr[-3000:]}"
    example, actual = json.loads(block.text(), parse_float=Written), json.loads(done.stdout)
    if isinstance(actual, list) and isinstance(example, dict):
        actual = actual[0]
    assert not differences(example, actual), "\n".join([block.name] + differences(example, actual))
