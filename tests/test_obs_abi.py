"""The ctypes layouts of the in-process OBS source against every OBS release's headers (tests/data/obs_abi.json).

The JSON holds facts derived from obs-studio's public headers by scripts/obs_abi.py (field names and C types in
order, enum and flag values, function declarations), one entry per release tag from 28.0.0 and for master. These
tests prove the version policy of ``libobs_source.check_version``: every recorded release is accepted, a newer
major is tried with a warning (the layouts only ever grew at their end), and an older one is refused. When an
obs-studio git clone (``LP_OBS_STUDIO_GIT``) or installed headers (/usr/include/obs) are present, the JSON is
regenerated from them and compared.
"""
from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from liveportrait_core.obs import libobs_source as lo

REPO = Path(__file__).resolve().parents[1]
DATA = json.loads((REPO / "tests" / "data" / "obs_abi.json").read_text())
VERSIONS: dict[str, dict] = DATA["versions"]
RELEASES = [v for v in VERSIONS if re.fullmatch(r"\d+\.\d+\.\d+", v)]
SCALARS = {"uint8_t": ctypes.c_uint8, "uint32_t": ctypes.c_uint32, "uint64_t": ctypes.c_uint64,
           "bool": ctypes.c_bool, "float": ctypes.c_float, "int": ctypes.c_int}
#: ctypes class -> recorded struct; the prefix class covers the first fields only (libobs zeroes the rest).
CLASSES = {"obs_source_info": lo.ObsSourceInfoPrefix, "obs_source_frame2": lo.ObsSourceFrame2}


def _script():
    spec = importlib.util.spec_from_file_location("obs_abi", REPO / "scripts" / "obs_abi.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _check_field(cls_name: str, name: str, c_type: str, ct: type, defines: dict) -> None:
    where = f"{cls_name}.{name}: C '{c_type}' vs ctypes {ct!r}"
    arr = re.fullmatch(r"(.*)\[(\w+)\]", c_type)
    if arr:
        n = arr.group(2)
        length = int(n) if n.isdigit() else defines[n]
        assert issubclass(ct, ctypes.Array) and ct._length_ == length, where
        _check_field(cls_name, name, arr.group(1), ct._type_, defines)
    elif "(*)" in c_type:  # a function pointer: pointer-sized; a typed one must agree on return and arity
        assert ct is ctypes.c_void_p or issubclass(ct, ctypes._CFuncPtr), where  # type: ignore[attr-defined]
        if ct is not ctypes.c_void_p:
            ret, params = re.fullmatch(r"(.*)\(\*\)\((.*)\)", c_type).groups()  # type: ignore[union-attr]
            nparams = 0 if params.strip() == "void" else len(params.split(","))
            assert len(ct._argtypes_) == nparams, where
            want_ret = None if ret.strip() == "void" else ctypes.c_char_p if "char *" in ret else ctypes.c_void_p
            assert ct._restype_ is want_ret, where
    elif c_type.endswith("*"):
        assert ct is (ctypes.c_char_p if "char *" in c_type else ctypes.c_void_p), where
    elif c_type.startswith("enum "):
        assert ct is ctypes.c_int, where
    else:
        assert ct is SCALARS[c_type], where


@pytest.mark.parametrize("version", list(VERSIONS))
def test_ctypes_layouts_match_the_recorded_headers(version):
    f = VERSIONS[version]
    for struct, cls in CLASSES.items():
        recorded = DATA["layouts"][f["structs"][struct]]
        ours = [(n, t) for n, t in cls._fields_]
        assert [n for n, _ in ours] == [n for n, _ in recorded[:len(ours)]], (version, struct)
        for (name, ct), (_n, c_type) in zip(ours, recorded):
            _check_field(struct, name, c_type, ct, f["defines"])
    assert ctypes.sizeof(lo.ObsSourceFrame2) > lo.ObsSourceFrame2.trc.offset  # the whole frame struct is ours
    assert f["enums"]["video_format"]["VIDEO_FORMAT_BGRA"] == lo.VIDEO_FORMAT_BGRA
    assert f["enums"]["video_range_type"]["VIDEO_RANGE_FULL"] == lo.VIDEO_RANGE_FULL
    assert f["enums"]["obs_source_type"]["OBS_SOURCE_TYPE_INPUT"] == lo.OBS_SOURCE_TYPE_INPUT
    d = f["defines"]
    assert (d["OBS_SOURCE_VIDEO"], d["OBS_SOURCE_ASYNC"], d["MAX_AV_PLANES"]) == (
        lo.OBS_SOURCE_VIDEO, lo.OBS_SOURCE_ASYNC, lo.MAX_AV_PLANES)
    fn = f["functions"]
    assert fn["obs_register_source_s"] == ("void obs_register_source_s(const struct obs_source_info *info, "
                                           "size_t size)")
    assert fn["obs_source_output_video2"] == ("void obs_source_output_video2(obs_source_t *source, "
                                              "const struct obs_source_frame2 *frame)")
    assert fn["obs_initialized"] == "bool obs_initialized(void)"
    assert fn["os_gettime_ns"] == "uint64_t os_gettime_ns(void)"
    assert f["register_accepts_smaller_size"] is True


def test_every_recorded_release_is_accepted_and_the_checked_range_is_what_was_recorded():
    majors = {int(v.split(".")[0]) for v in RELEASES}
    assert set(lo.CHECKED_MAJOR_VERSIONS) == majors  # no major accepted silently without its headers checked
    for v in RELEASES:
        version, warning = lo.check_version(v)
        assert version[0] in lo.CHECKED_MAJOR_VERSIONS and warning == "", v
    assert lo.check_version("32.2.2.1-1")[1] == ""  # distribution suffixes


def test_a_newer_major_is_tried_with_a_warning_and_an_older_one_is_refused():
    """The evidence for trying an unchecked newer OBS: across every recorded version (master included) the
    source description only grew at its end, and the register call accepts an older, smaller one."""
    order = [f["structs"]["obs_source_info"] for f in VERSIONS.values()]
    layouts = [DATA["layouts"][lid] for lid in dict.fromkeys(order)]
    for older, newer in zip(layouts, layouts[1:]):
        assert newer[:len(older)] == older and len(newer) > len(older)
    assert len({f["structs"]["obs_source_frame2"] for f in VERSIONS.values()}) == 1
    newer = f"{lo.CHECKED_MAJOR_VERSIONS.stop}.0.0"
    version, warning = lo.check_version(newer)
    assert version[0] == lo.CHECKED_MAJOR_VERSIONS.stop
    assert newer in warning and "Spout2 or NDI" in warning and "OBS.md" in warning
    for bad in ("27.2.4", "", "garbage"):
        with pytest.raises(lo.LibobsUnavailable, match="Spout2"):
            lo.check_version(bad)


def _mirror() -> Path | None:
    for p in (os.environ.get("LP_OBS_STUDIO_GIT"), REPO.parent / ".mirror" / "obsproject+obs-studio" / "repo"):
        if p and Path(p).exists() and shutil.which("git"):
            return Path(p)
    return None


def test_recorded_facts_match_an_obs_studio_clone():
    """Regenerates a sample (first and last release of each major, and master) and looks for releases that are
    not recorded yet: a new OBS release means running scripts/obs_abi.py again."""
    repo = _mirror()
    if repo is None:
        pytest.skip("no obs-studio git clone (set LP_OBS_STUDIO_GIT to one)")
    mod = _script()
    tags = mod.release_tags(repo)
    missing = [t for t in tags if t not in VERSIONS]
    assert not missing, f"releases not recorded: {missing}; run: python scripts/obs_abi.py --repo {repo}"
    by_major: dict[str, list[str]] = {}
    for t in tags:
        by_major.setdefault(t.split(".")[0], []).append(t)
    sample = sorted({x for ts in by_major.values() for x in (ts[0], ts[-1])}) + ["master"]
    fresh = mod.build(repo, sample)
    for ref in sample:
        if ref == "master" and fresh["versions"][ref] != VERSIONS.get(ref):
            # master moves: it must still extend the newest release's layouts (else re-check before accepting)
            info = fresh["layouts"][fresh["versions"][ref]["structs"]["obs_source_info"]]
            last = DATA["layouts"][VERSIONS[tags[-1]]["structs"]["obs_source_info"]]
            assert info[:len(last)] == last, "obs-studio master changed obs_source_info: run scripts/obs_abi.py"
            continue
        got = {s: fresh["layouts"][lid] for s, lid in fresh["versions"][ref]["structs"].items()}
        want = {s: DATA["layouts"][lid] for s, lid in VERSIONS[ref]["structs"].items()}
        assert got == want, ref
        strip = ("structs",)
        assert {k: v for k, v in fresh["versions"][ref].items() if k not in strip} == \
            {k: v for k, v in VERSIONS[ref].items() if k not in strip}, ref


def test_recorded_facts_match_the_installed_libobs_headers():
    inc = Path("/usr/include/obs")
    if not (inc / "obs.h").is_file():
        pytest.skip("needs libobs-dev headers (/usr/include/obs)")
    cfg = (inc / "obs-config.h").read_text()
    ver = ".".join(re.search(rf"#define LIBOBS_API_{k}_VER\s+(\d+)", cfg).group(1)  # type: ignore[union-attr]
                   for k in ("MAJOR", "MINOR", "PATCH"))
    assert ver in VERSIONS, f"installed libobs {ver} is not recorded"
    mod = _script()
    got = mod.facts(mod.dir_reader(inc))
    want = VERSIONS[ver]
    for s, lid in want["structs"].items():
        assert got["structs"][s] == DATA["layouts"][lid], s
    for k in ("enums", "defines", "functions"):
        assert got[k] == want[k], k
