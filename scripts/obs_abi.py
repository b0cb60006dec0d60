"""Derive the libobs ABI facts the OBS script relies on from obs-studio's public headers, per release.

The in-process source (``liveportrait_core/obs/libobs_source.py``) calls libobs through ctypes, so its struct
layouts must match each OBS release's headers. This script reads those headers — from a git clone of
obs-studio (one entry per release tag, plus ``master``) or from an installed ``/usr/include/obs`` — and writes
only derived facts to ``tests/data/obs_abi.json``: the ordered field names and C types of
``struct obs_source_info`` and ``struct obs_source_frame2``, the enum values and flags the script sends, the
declarations of the functions it calls, and whether ``obs_register_source_s`` accepts a smaller (older)
``obs_source_info``. No OBS source text is copied; ``tests/test_obs_abi.py`` checks the ctypes classes against
every recorded version.

    python scripts/obs_abi.py --repo /path/to/obs-studio.git [--out tests/data/obs_abi.json]
    python scripts/obs_abi.py --include /usr/include/obs --print      # one installed version, to stdout
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import operator
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

#: Headers (relative to libobs/) that hold what is recorded, and libobs's implementation of the register call.
HEADERS = {"source": "obs-source.h", "obs": "obs.h", "video": "media-io/video-io.h",
           "media": "media-io/media-io-defs.h", "platform": "util/platform.h"}
MODULE_IMPL = "obs-module.c"
STRUCTS = {"obs_source_info": "source", "obs_source_frame2": "obs"}
ENUMS = {"video_format": ("video", ["VIDEO_FORMAT_BGRA"]), "video_range_type": ("video", ["VIDEO_RANGE_FULL"]),
         "obs_source_type": ("source", ["OBS_SOURCE_TYPE_INPUT"])}
DEFINES = {"OBS_SOURCE_VIDEO": "source", "OBS_SOURCE_ASYNC": "source", "MAX_AV_PLANES": "media"}
FUNCTIONS = {"obs_register_source_s": "source", "obs_source_output_video2": "obs", "obs_initialized": "obs",
             "os_gettime_ns": "platform"}
RELEASE_TAG = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
FIRST_MAJOR = 28
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "obs_abi.json"


_OPS = {ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitOr: operator.or_,
        ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def const_int(expr: str, names: dict[str, int] | None = None) -> int:
    """An integer constant expression of a header (``8``, ``(1 << 2)``, ``A | B``, ``0x10u``); never ``eval``."""
    def ev(n: ast.AST) -> int:
        if isinstance(n, ast.Constant) and isinstance(n.value, int):
            return n.value
        if isinstance(n, ast.Name) and names and n.id in names:
            return names[n.id]
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -ev(n.operand)
        raise ValueError(f"not a constant: {expr!r}")

    return ev(ast.parse(re.sub(r"(?<=[0-9a-fA-F])[uUlL]+\b", "", expr.strip()), mode="eval").body)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _norm(decl: str) -> str:
    """Whitespace-normalised C text: ``const char *``, ``uint8_t *[MAX_AV_PLANES]``."""
    decl = re.sub(r"\s+", " ", decl).strip()
    decl = re.sub(r"\s*\*\s*", " *", decl)
    decl = re.sub(r"\s*([\[\](),])\s*", r"\1", decl)
    return decl.replace(",", ", ").replace("( *", "(*")


def _body(text: str, head: str) -> str | None:
    m = re.search(head + r"\s*\{", text)
    if not m:
        return None
    depth, i = 1, m.end()
    while depth and i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end():i - 1]


def struct_fields(text: str, name: str) -> list[list[str]] | None:
    """``[[field, C type], ...]`` in declaration order; a function pointer's type is ``ret (*)(params)``."""
    body = _body(strip_comments(text), rf"\bstruct\s+{name}")
    if body is None:
        return None
    body = re.sub(r"^\s*#.*$", "", body, flags=re.M)
    out = []
    for decl in (d.strip() for d in body.split(";")):
        if not decl:
            continue
        fn = re.match(r"(.*?)\(\s*\*\s*(\w+)\s*\)\s*\((.*)\)$", decl, flags=re.S)
        if fn:  # parameter names are not part of the ABI: keep the types only
            params = [re.sub(r"\s*\b\w+$", "", p.strip()) if re.search(r"[\w*]\s+\**\w+$", p.strip())
                      and p.strip() != "void" else p.strip() for p in fn.group(3).split(",")]
            out.append([fn.group(2), _norm(f"{fn.group(1)}(*)({', '.join(params)})")])
            continue
        arr = re.match(r"(.*?)(\w+)\s*(\[.*\])$", decl, flags=re.S)
        if arr:
            out.append([arr.group(2), _norm(arr.group(1) + arr.group(3))])
            continue
        plain = re.match(r"(.*?[\s*])(\w+)$", decl, flags=re.S)
        if plain:
            out.append([plain.group(2), _norm(plain.group(1))])
    return out


def enum_values(text: str, name: str) -> dict[str, int] | None:
    body = _body(strip_comments(text), rf"\benum\s+{name}")
    if body is None:
        return None
    values, nxt = {}, 0
    for item in (i.strip() for i in body.split(",")):
        if not item:
            continue
        key, _, expr = item.partition("=")
        if expr.strip():
            nxt = const_int(expr, values)
        values[key.strip()] = nxt
        nxt += 1
    return values


def define_value(text: str, name: str) -> int | None:
    m = re.search(rf"^\s*#define\s+{name}\s+(.+)$", strip_comments(text), flags=re.M)
    return const_int(m.group(1)) if m else None


def function_decl(text: str, name: str) -> str | None:
    m = re.search(rf"EXPORT\s+([^;{{}}]*?\b{name}\s*\([^;]*?\))\s*;", strip_comments(text), flags=re.S)
    if not m:
        return None
    decl = m.group(1)
    head, _, params = decl.partition("(")
    return _norm(head) + "(" + _norm(params[:-1]) + ")"


def register_accepts_smaller(impl: str) -> bool | None:
    """True when ``obs_register_source_s`` refuses only a size larger than its own struct and copies ``size``
    bytes into a zeroed one (fields an older caller does not know are NULL)."""
    body = _body(strip_comments(impl), r"void\s+obs_register_source_s\s*\([^)]*\)")
    if body is None:
        return None
    zeroed = re.search(r"struct\s+obs_source_info\s+data\s*=\s*\{\s*0\s*\}", body) is not None
    larger_only = re.search(r"if\s*\(\s*size\s*>\s*sizeof\s*\(\s*data\s*\)\s*\)", body) is not None
    copies = re.search(r"memcpy\s*\(\s*&data\s*,\s*info\s*,\s*size\s*\)", body) is not None
    return zeroed and larger_only and copies


def facts(read: Callable[[str], str | None]) -> dict:
    """All facts for one version; ``read(rel)`` returns a file under libobs/ (None when missing)."""
    texts = {k: read(v) or "" for k, v in HEADERS.items()}
    out: dict = {"structs": {}, "enums": {}, "defines": {}, "functions": {}}
    for s, h in STRUCTS.items():
        out["structs"][s] = struct_fields(texts[h], s)
    for e, (h, keys) in ENUMS.items():
        vals = enum_values(texts[h], e) or {}
        out["enums"][e] = {k: vals.get(k) for k in keys}
    for d, h in DEFINES.items():
        out["defines"][d] = define_value(texts[h], d)
    for f, h in FUNCTIONS.items():
        out["functions"][f] = function_decl(texts[h], f)
    impl = read(MODULE_IMPL)
    out["register_accepts_smaller_size"] = register_accepts_smaller(impl) if impl else None
    return out


def git_reader(repo: Path, ref: str) -> Callable[[str], str | None]:
    def read(rel: str) -> str | None:
        p = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:libobs/{rel}"], capture_output=True, text=True)
        return p.stdout if p.returncode == 0 else None

    return read


def dir_reader(include: Path) -> Callable[[str], str | None]:
    def read(rel: str) -> str | None:
        p = include / rel
        return p.read_text(errors="replace") if p.is_file() else None

    return read


def release_tags(repo: Path, first_major: int = FIRST_MAJOR) -> list[str]:
    tags = subprocess.run(["git", "-C", str(repo), "tag"], capture_output=True, text=True, check=True).stdout.split()
    rel = [t for t in tags if RELEASE_TAG.match(t) and int(t.split(".")[0]) >= first_major]
    return sorted(rel, key=lambda t: tuple(map(int, t.split("."))))


def _layout_id(fields: list[list[str]]) -> str:
    return hashlib.sha1(json.dumps(fields).encode()).hexdigest()[:10]


def build(repo: Path, refs: list[str]) -> dict:
    """One entry per ref; struct layouts are stored once and referred to by id (they rarely change)."""
    layouts: dict[str, list[list[str]]] = {}
    versions: dict[str, dict] = {}
    for ref in refs:
        f = facts(git_reader(repo, ref))
        for s, fields in f["structs"].items():
            if fields is None:
                raise SystemExit(f"{ref}: struct {s} not found")
            lid = f"{s}@{_layout_id(fields)}"
            layouts.setdefault(lid, fields)
            f["structs"][s] = lid
        versions[ref] = f
    return {"about": "Derived from obs-studio's public libobs headers by scripts/obs_abi.py (facts only: field "
                     "names and C types in order, enum/define values, function declarations). "
                     "tests/test_obs_abi.py checks libobs_source.py's ctypes layouts against every version.",
            "versions": versions, "layouts": layouts}


def dumps(data: dict) -> str:
    """Indented JSON with each [field, type] pair on one line (readable diffs)."""
    text = json.dumps(data, indent=1)
    return re.sub(r'\[\n\s+("[^"]*"),\n\s+("[^"]*")\n\s+\]', r"[\1, \2]", text) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--repo", type=Path, help="a git clone (bare is fine) of obs-studio")
    src.add_argument("--include", type=Path, help="an installed header folder, e.g. /usr/include/obs")
    ap.add_argument("--refs", nargs="*", help="tags/branches (default: every release tag from 28.0.0, and master)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--print", action="store_true", help="write JSON to stdout instead of --out")
    a = ap.parse_args(argv)
    if a.include is not None:
        data = facts(dir_reader(a.include))
    else:
        refs = a.refs or [*release_tags(a.repo), "master"]
        data = build(a.repo, refs)
    text = dumps(data)
    if a.print or a.include is not None:
        sys.stdout.write(text)
    else:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
        print(f"wrote {a.out} ({len(data['versions'])} versions, {len(data['layouts'])} distinct layouts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
