"""Every command that README.md and docs/*.md show is accepted by the code, and the safe ones run.

Commands are collected from fenced code blocks (lines) and inline code spans that start with a Python
interpreter (``python``, ``python3``, ``python3.12``, ``py -3.12``, ``.venv/bin/python``,
``.venv\\Scripts\\python``) or with the ``liveportrait`` command (bare, ``.venv/bin/liveportrait``,
``…\\.venv\\Scripts\\liveportrait.exe``), which stands for ``python -m liveportrait_core``. For each one:

1. its arguments are parsed by the real parser (``cli.build_parser()``, or install.py's own parser,
   stopped right after parsing), so a documented flag, sub-command or choice the code does not accept
   fails this test; ``--set key=value`` overrides are checked against the settings schema;
2. it is run with this test's interpreter (``sys.executable``), as documented where that is safe and
   quick, or as listed in ``INSTEAD``: commands that need a GPU, a camera, a screen or the network, that
   install things, or that take minutes on a CPU run with ``--help`` (or the named stand-in) instead.

A command the docs show that matches no rule below fails the test, so a new one gets a decision here.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from liveportrait_core.cli import main as cli
from liveportrait_core import settings as settings_mod

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

#: How a documented interpreter is written; each is replaced by sys.executable.
INTERPRETER = re.compile(r"^(?:\.venv[/\\](?:bin|Scripts)[/\\]python(?:\.exe)?|py -3(?:\.\d+)?|python(?:3(?:\.\d+)?)?)"
                         r"(?=\s|$)")
#: The console command pyproject.toml declares, bare or by its path in a venv: ``python -m liveportrait_core``.
CLI_PROGRAM = re.compile(r"^(?:\S*[/\\]\.venv[/\\](?:bin|Scripts)[/\\]|\.venv[/\\](?:bin|Scripts)[/\\])?"
                         r"liveportrait(?:\.exe)?(?=\s|$)")
#: Inline spans that are usage synopses, not commands: only their flags are checked.
SYNOPSIS = re.compile(r"[\[\]|<>…]|\.\.\.")

#: ``python -m liveportrait_core <sub>`` run as documented (quick, offline, no camera or GPU needed).
RUN_AS_DOCUMENTED = {"doctor", "check-character"}
#: Placeholder file names in the docs, and the real file a run uses instead.
STAND_INS = {"my_character.png": "characters/astronaut.png"}
#: The others run with ``--help`` instead, for this reason.
INSTEAD = {
    "download-models": "downloads ~520 MB from Hugging Face (network)",
    "run": "needs a camera or a video, the weights, and minutes per frame on a CPU",
    "preview": "needs a camera, a screen and the weights",
    "record": "needs a camera or a video and the weights",
    "demo": "needs a camera and a screen (or a video) and the weights",
    "benchmark": "takes minutes on a CPU; the GPU figures need a GPU",
    "export-onnx": "exports 800 MB of networks from the weights: minutes on a CPU",
    "place-face": "opens a window on a desktop (tests/test_place_face_window.py drives it under Xvfb)",
    "install.py": "installs packages, downloads the weights and starts the demo",
    "scripts/soak.py": "runs the engine for 30 minutes",
    "scripts/gpu_check.py": "needs an NVIDIA GPU (tests/test_gpu_check.py runs its --dry-run)",
    "-m pytest": "would run the test suite inside the test suite (pytest --version instead)",
    "-m venv": "would create an environment (venv --help instead)",
}


@dataclass(frozen=True)
class DocCommand:
    doc: str
    text: str  #: as written (comment removed)
    argv: tuple[str, ...]  #: after the interpreter
    synopsis: bool  #: a usage line with placeholders, not a runnable command

    @property
    def where(self) -> str:
        return f"{self.doc}: `{self.text}`"


def _split_shell(line: str) -> list[str]:
    """``a && b`` -> two commands; a trailing ``# comment`` dropped; a ``> file`` redirection dropped."""
    line = re.sub(r"\s+#.*$", "", line.strip())
    parts = [p.strip() for p in line.split("&&")]
    return [re.sub(r"\s+>\s*\S+$", "", p) for p in parts if p]


def _commands_in(path: Path) -> list[DocCommand]:
    text = path.read_text(encoding="utf-8")
    doc = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    found: list[tuple[str, bool]] = []
    prose: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            found += [(c, False) for c in _split_shell(line)]
        else:
            prose.append(line)
    for span in re.findall(r"`([^`]+)`", "\n".join(prose)):
        span = " ".join(span.split())
        found += [(c, bool(SYNOPSIS.search(c))) for c in _split_shell(span)]
    out = []
    for cmd, synopsis in found:
        m = INTERPRETER.match(cmd)
        program = CLI_PROGRAM.match(cmd) if not m else None
        if not (m or program):
            continue
        rest = cmd[(m or program).end():].strip()
        argv = tuple(rest.split()) if synopsis else tuple(shlex.split(rest))
        if program:
            argv = ("-m", "liveportrait_core", *argv)
        if argv:
            out.append(DocCommand(doc, cmd, argv, synopsis))
    return out


def documented_commands() -> list[DocCommand]:
    seen: dict[tuple[str, tuple[str, ...]], DocCommand] = {}
    for path in DOC_FILES:
        for c in _commands_in(path):
            seen.setdefault((c.doc, c.argv), c)
    return list(seen.values())


COMMANDS = documented_commands()


def kind(c: DocCommand) -> str:
    """Which rule a command falls under; 'unknown' fails the test."""
    a = c.argv
    if a[:2] == ("-m", "liveportrait_core"):
        return "cli"
    if a[:2] == ("-m", "liveportrait_core.tools.settings_doc"):
        return "settings_doc"
    if a[0] in ("install.py", "scripts/soak.py", "scripts/obs_abi.py", "scripts/gpu_check.py"):
        return a[0]
    if a[:2] in (("-m", "pytest"), ("-m", "venv")):
        return " ".join(a[:2])
    return "unknown"


def test_the_docs_show_commands():
    kinds = {kind(c) for c in COMMANDS}
    assert {"cli", "install.py"} <= kinds, f"the command collector found too little: {kinds}"


@pytest.mark.parametrize("c", COMMANDS, ids=lambda c: f"{c.doc}:{' '.join(c.argv)[:60]}")
def test_documented_command_is_accepted_by_the_code(c: DocCommand, tmp_path, monkeypatch):
    k = kind(c)
    assert k != "unknown", f"{c.where}: no rule in tests/test_docs.py says how to check this command"
    if k == "cli":
        _check_cli_arguments(c, tmp_path)
    elif k in ("install.py", "scripts/soak.py", "scripts/obs_abi.py", "scripts/gpu_check.py"):
        _check_script_arguments(c, monkeypatch)


def _cli_argv(c: DocCommand) -> list[str]:
    return list(c.argv[2:])


def _check_cli_arguments(c: DocCommand, tmp_path: Path) -> None:
    argv = _cli_argv(c)
    parser = cli.build_parser()
    if not argv or argv[0].startswith("<"):
        return  # the bare program name
    if argv in (["--help"], ["--version"]):
        return  # the program's own options (run below)
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices  # noqa: SLF001
    assert argv[0] in subs, f"{c.where}: no command {argv[0]!r}; the code has {sorted(subs)}"
    if c.synopsis:  # only the flags of a usage line can be checked
        known = set(subs[argv[0]]._option_string_actions)  # noqa: SLF001
        flags = {f for f in re.findall(r"--[a-z][a-z0-9-]*", " ".join(argv[1:]))}
        assert flags <= known, f"{c.where}: {argv[0]} does not accept {sorted(flags - known)}"
        return
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{c.where}: the CLI refuses these arguments (exit {e.code})")
    if args.config:  # a documented settings file: the YAML example of docs/SETTINGS.md stands in for it
        cfg = tmp_path / Path(args.config).name
        cfg.write_text(_yaml_examples()[0], encoding="utf-8")
        args.config = str(cfg)
    try:
        cli.load_settings(args)
    except settings_mod.SettingsError as e:
        pytest.fail(f"{c.where}: settings refused: {e}")


class _Parsed(Exception):
    def __init__(self, ns: argparse.Namespace) -> None:
        self.ns = ns


def _check_script_arguments(c: DocCommand, monkeypatch) -> None:
    """Parse with the script's own parser and stop there: nothing is installed or run."""
    spec = importlib.util.spec_from_file_location("lp_script_under_test", REPO / c.argv[0])
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # dataclasses look their module up there
    spec.loader.exec_module(script)
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [c.argv[0], *c.argv[1:]])
    try:
        script.main()
    except _Parsed:
        return
    except SystemExit as e:
        if "--help" in c.argv and e.code == 0:
            return
        pytest.fail(f"{c.where}: {c.argv[0]} refuses these arguments (exit {e.code})")
    pytest.fail(f"{c.where}: {c.argv[0]} did not parse its arguments first")


@pytest.mark.parametrize("line", [
    "python -m liveportrait_core benchmark --bogus",
    "python -m liveportrait_core no-such-command",
    "python -m liveportrait_core preview --set animation.region=nonsense",
    "python -m liveportrait_core check-character PATH [--no-such-flag]",
    "liveportrait no-such-command",
    ".venv/bin/liveportrait benchmark --bogus",
    "C:\\LP\\.venv\\Scripts\\liveportrait.exe doctor --no-such-flag",
    "python3 install.py --torch rocm",
    "py -3.12 install.py --no-such-flag",
])
def test_a_command_the_code_does_not_accept_fails_the_check(line, tmp_path, monkeypatch):
    """The checks above can fail: documented commands the code refuses are caught."""
    doc = tmp_path / "X.md"
    doc.write_text(f"text `{line}` text\n", encoding="utf-8")
    (c,) = _commands_in(doc)
    with pytest.raises((pytest.fail.Exception, AssertionError)):
        if kind(c) == "cli":
            _check_cli_arguments(c, tmp_path)
        else:
            _check_script_arguments(c, monkeypatch)


def _yaml_examples() -> list[str]:
    text = (REPO / "docs" / "SETTINGS.md").read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.S)


def test_settings_yaml_examples_load(tmp_path):
    examples = _yaml_examples()
    assert examples, "docs/SETTINGS.md shows no YAML example"
    for i, text in enumerate(examples):
        f = tmp_path / f"example{i}.yaml"
        f.write_text(text, encoding="utf-8")
        settings_mod.load(f)  # raises SettingsError naming the key


# --- running them ------------------------------------------------------------------------------------------


def _run(argv: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _runnable() -> list[tuple[str, tuple[str, ...]]]:
    """(what, argv to run) once per distinct invocation; documented where safe, else the stand-in."""
    plan: dict[tuple[str, ...], str] = {}
    for c in COMMANDS:
        k = kind(c)
        if c.synopsis or k == "unknown":
            continue
        if k == "cli":
            argv = _cli_argv(c)
            if not argv:
                plan.setdefault(("-m", "liveportrait_core"), c.where)
            elif argv in (["--help"], ["--version"]):
                plan.setdefault(("-m", "liveportrait_core", *argv), c.where)
            elif argv[0] in RUN_AS_DOCUMENTED:
                plan.setdefault(("-m", "liveportrait_core", *(STAND_INS.get(a, a) for a in argv)), c.where)
            else:
                assert argv[0] in INSTEAD, f"{c.where}: add {argv[0]!r} to RUN_AS_DOCUMENTED or INSTEAD"
                plan.setdefault(("-m", "liveportrait_core", argv[0], "--help"), c.where)
        elif k == "settings_doc":
            plan.setdefault(c.argv, c.where)
        elif k in ("install.py", "scripts/soak.py", "scripts/obs_abi.py", "scripts/gpu_check.py"):
            plan.setdefault((k, "--help"), c.where)
        elif k == "-m pytest":
            plan.setdefault(("-m", "pytest", "--version"), c.where)
        elif k == "-m venv":
            plan.setdefault(("-m", "venv", "--help"), c.where)
    return [(where, argv) for argv, where in plan.items()]


RUNS = _runnable()


@pytest.mark.parametrize("where,argv", RUNS, ids=[" ".join(a) for _, a in RUNS])
def test_documented_command_runs(where: str, argv: tuple[str, ...], tmp_path):
    # Commands run in a scratch folder holding a link to the characters, so that what they write
    # (check-character's previews) never lands in the checkout.
    (tmp_path / "characters").symlink_to(REPO / "characters", target_is_directory=True)
    script = argv[0] in ("install.py", "scripts/soak.py", "scripts/obs_abi.py", "scripts/gpu_check.py")
    p = _run([str(REPO / argv[0]), *argv[1:]] if script else list(argv), REPO if script else tmp_path)
    out = p.stdout + p.stderr
    assert "Traceback" not in out, f"{where}: {' '.join(argv)} crashed:\n{out[-3000:]}"
    if argv == ("-m", "liveportrait_core"):
        assert p.returncode == 2 and "usage:" in out
    elif "--help" in argv or argv[-1] == "--version":
        assert p.returncode == 0, f"{where}: {' '.join(argv)} exit {p.returncode}:\n{out[-2000:]}"
        assert out.strip()
    elif argv[2:3] == ("doctor",) and "--json" in argv:
        report = json.loads(p.stdout)
        assert p.returncode == (0 if report["ready"] else 1) and report["checks"][0]["name"] == "python"
    elif argv[2:3] == ("doctor",):
        # 0 when ready, 1 when something is missing (no weights here): a report either way
        assert p.returncode in (0, 1) and re.search(r"^\[(OK  |WARN|FAIL)\] python ", p.stdout, re.M), out[-2000:]
        assert ("ready to run" in p.stdout) == (p.returncode == 0)
    elif argv[2:3] == ("check-character",):
        assert p.returncode == 0, f"{where}: {out[-2000:]}"
        assert "astronaut.png" in p.stdout
        out_dir = argv[argv.index("--out") + 1] if "--out" in argv else "check-character"
        assert (tmp_path / out_dir / "astronaut.crop.png").is_file()
        if "--json" in argv:
            assert json.loads(p.stdout)[0]["face_found"] is True
    elif argv[:2] == ("-m", "liveportrait_core.tools.settings_doc"):
        assert p.returncode == 0
        assert p.stdout == (REPO / "docs" / "SETTINGS.md").read_text(encoding="utf-8")
    else:  # pragma: no cover - _runnable() only plans the cases above
        pytest.fail(f"no expectation for {argv}")


# --- links -------------------------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.name)
def test_relative_links_and_anchors_exist(doc: Path):
    text = doc.read_text(encoding="utf-8")
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path = (doc.parent / target) if target else doc
        assert path.exists(), f"{doc.name}: link to {target} which does not exist"
        if anchor and path.suffix == ".md":
            headings = re.findall(r"^#+\s+(.*)$", path.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"{doc.name}: no heading for #{anchor} in {path.name}"


def test_installation_guide_shows_install_help_exactly():
    """docs/INSTALLATION.md quotes ``install.py --help`` word for word (at argparse's 80-column width)."""
    env = {**os.environ, "COLUMNS": "80", "PYTHONIOENCODING": "utf-8"}
    p = subprocess.run([sys.executable, str(REPO / "install.py"), "--help"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("usage: install.py")
    guide = (REPO / "docs" / "INSTALLATION.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(usage: install\.py.*?)```", guide, flags=re.S)
    assert blocks == [p.stdout.rstrip("\n") + "\n"], \
        f"docs/INSTALLATION.md must show `python3 install.py --help` as printed now:\n{p.stdout}"
