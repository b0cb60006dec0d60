"""The official LivePortrait weight files: where they are, whether they are right, how to read and write them.

Every check ends in a message a user can act on: it names the file, says what is wrong (missing or
unexpected keys, shapes that differ, a truncated or unsafe file) and what to do. Files are read with
``torch.load(weights_only=True)``, so a checkpoint that would run code when unpickled is refused,
never executed. The weight files themselves are never modified: verified hashes go to a separate
manifest (``verified_weights.json``) in the models folder.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from liveportrait_core import paths
from liveportrait_core.models.checkpoint import layout

if TYPE_CHECKING:
    import numpy as np
    import torch

_log = logging.getLogger(__name__)

#: Hugging Face repository that publishes the official weights (MIT licence).
REPO_ID = "KwaiVGI/LivePortrait"
#: Manifest of hashes verified at download time, kept next to the weights (never inside a weight file).
MANIFEST_NAME = "verified_weights.json"

#: Official (size in bytes, SHA-256) per file, from the Git LFS pointers of the Hugging Face repository:
#: https://huggingface.co/KwaiVGI/LivePortrait (page "Git LFS Details" of liveportrait/base_models/
#: motion_extractor.pth shows SHA256 251e6a94...) and the pointer files of the mirror commit
#: https://huggingface.co/camenduru/LivePortrait/commit/3874282f63f761d594fd4a080eb45eb616d9158a
#: ("thanks to KwaiVGI"), which list all five human files with the same hashes and sizes.
#: The animal v1.1 base models have no published hash we could find: they are checked against the hub's
#: own LFS metadata at download time and recorded in the manifest.
OFFICIAL_CHECKSUMS: dict[str, tuple[int, str]] = {
    "liveportrait/base_models/appearance_feature_extractor.pth":
        (3_387_959, "5279bb8654293dbdf327030b397f107237dd9212fb11dd75b83dfb635211ceb5"),
    "liveportrait/base_models/motion_extractor.pth":
        (112_545_506, "251e6a94ad667a1d0c69526d292677165110ef7f0cf0f6d199f0e414e8aa0ca5"),
    "liveportrait/base_models/spade_generator.pth":
        (221_813_590, "4780afc7909a9f84e24c01d73b31a555ef651521a1fe3b2429bd04534d992aee"),
    "liveportrait/base_models/warping_module.pth":
        (182_180_086, "2f61a6f265fe344f14132364859a78bdbbc2068577170693da57fb96d636e282"),
    "liveportrait/retargeting_models/stitching_retargeting_module.pth":
        (2_393_098, "3652d5a3f95099141a56986aaddec92fadf0a73c87a20fac9a2c07c32b28b611"),
}

#: Bytes a file may hold beyond its tensors (pickle, zip headers, alignment); generous on purpose, the
#: official stitching file holds 0.9 MB of float32 in 2.4 MB.
_SIZE_SLACK = 2 * 1024 * 1024
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
_SHOW = 5  # how many keys a message lists before "and N more"


class WeightsError(Exception):
    """A weight file is missing, unreadable or not the official layout; the message is for the user."""


@dataclass
class FileReport:
    """The state of one official weight file, for ``doctor`` and the OBS panel."""

    file: str  #: official file key, e.g. "spade_generator"
    path: Path
    status: str  #: "ok", "differs" (usable, not byte-identical to the known file), "missing" or "bad"
    size: int | None
    message: str
    fix: str
    sha256: str | None = None  #: set when the file was hashed

    @property
    def ok(self) -> bool:
        """Usable: "ok", or "differs" (official layout, other bytes: e.g. converted to fp16; kept, never replaced)."""
        return self.status in ("ok", "differs")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


# ------------------------------------------------------------------------------------------------
# where the files are


def models_root(models_dir: str | os.PathLike[str]) -> Path:
    """The models folder, with relative paths taken from the project (as the settings say)."""
    return paths.resolve(models_dir)


def checkpoint_paths(models_dir: str | os.PathLike[str], variant: str = "human") -> dict[str, Path]:
    """Official file key -> absolute path of that file for ``variant``."""
    root = models_root(models_dir)
    return {k: root / rel for k, rel in layout.checkpoint_files(variant).items()}


def download_fix(variant: str = "human", again: bool = True,
                 models_dir: str | os.PathLike[str] | None = None, force: bool = False) -> str:
    """What to tell the user: the command that fetches the official files for ``variant`` into the folder
    that was checked (``--models-dir DIR`` unless it is the default one, so following it fixes that folder).
    ``download-models`` replaces a damaged file by itself; ``force`` also replaces a usable one."""
    args = [] if variant == "human" else ["--variant", variant]
    if force:
        args.append("--force")
    if models_dir is not None:
        root = models_root(models_dir)
        if root.resolve() != paths.DEFAULT_MODELS_DIR.resolve():
            args += ["--models-dir", paths.quote_arg(str(root))]
    cmd = paths.cli_command("download-models", *args)
    return f"{'re-download' if again else 'download'} with `{cmd}`"


def size_bounds(file: str) -> tuple[int, int]:
    """Plausible file size: float16 storage of every tensor at least, float64 plus slack at most."""
    elems = sum(layout.module_layout(m).num_elements() for m in layout.modules_in_file(file))
    return elems * 2, elems * 8 + _SIZE_SLACK


# ------------------------------------------------------------------------------------------------
# reading and checking


def _torch():
    import torch
    return torch


def load_checkpoint(path: Path, variant: str = "human", models_dir: str | os.PathLike[str] | None = None) -> Any:
    """``torch.load`` that never runs code from the file; failures become a ``WeightsError`` whose fix
    names ``models_dir`` (the folder ``path`` belongs to)."""
    torch = _torch()
    fix = download_fix(variant, models_dir=models_dir)
    kind = _sniff(path)
    if kind:
        raise WeightsError(f"{path}: not a PyTorch checkpoint: {kind}. Delete it and {fix}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():
            raise WeightsError(
                f"{path}: refused to load: the file contains objects other than plain tensors (a pickle that "
                f"could run code), so it is not an official LivePortrait checkpoint. Delete it and {fix}.") from None
        _log.debug("%s: %s", path, e)  # torch's text is about its own defaults, not useful to the user
        raise WeightsError(f"{path}: not a PyTorch checkpoint (corrupt, or a different kind of file). "
                           f"Delete it and {fix}.") from None
    except FileNotFoundError:
        raise WeightsError(f"{path}: file not found; {download_fix(variant, False, models_dir)}.") from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, ImportError) as e:
        raise WeightsError(f"{path}: cannot be read (truncated or corrupt: {_short(e)}). "
                           f"Delete it and {fix}.") from None


def _sniff(path: Path) -> str | None:
    """Recognise the usual wrong downloads by their first bytes (a Git LFS pointer, an HTML page, text)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if head.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the weights (the repository was cloned without Git LFS)"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page (an error or login page saved instead of the weights)"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "it is a text file"
    return None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _strip_module(key: str) -> str:
    """The official loader deletes every 'module.' substring (DataParallel leftovers)."""
    return key.replace("module.", "")


def split_file(file: str, obj: Any) -> dict[str, dict[str, Any]]:
    """Module name -> raw state_dict inside one loaded checkpoint object (stitching file: remapped)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"holds a {type(obj).__name__}, not a state_dict")
    names = layout.modules_in_file(file)
    if len(names) == 1 and layout.module_layout(names[0]).sub_key is None:
        return {names[0]: dict(obj)}
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        sub = layout.module_layout(name).sub_key
        inner = obj.get(sub)
        if not isinstance(inner, Mapping):
            found = ", ".join(map(str, list(obj)[:_SHOW])) or "nothing"
            raise ValueError(f"has no '{sub}' sub-dict (for the {name} network); it holds: {found}")
        out[name] = {_strip_module(str(k)): v for k, v in inner.items()}
    return out


def _list(keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(f"'{k}'" for k in keys[:_SHOW])
    return shown + (f" and {len(keys) - _SHOW} more" if len(keys) > _SHOW else "")


def check_state_dict(name: str, sd: Mapping[str, Any]) -> list[str]:
    """Problems of one module's state_dict against the official layout (empty list: it matches)."""
    torch = _torch()
    spec = layout.module_layout(name)
    expected = {t.key: t for t in spec.tensors}
    problems: list[str] = []
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing:
        problems.append(f"{name}: {len(missing)} missing key(s): {_list(missing)}")
    if unexpected:
        problems.append(f"{name}: {len(unexpected)} unexpected key(s): {_list(unexpected)}")
    bad: list[str] = []
    for k, t in expected.items():
        v = sd.get(k)
        if v is None:
            continue
        if not isinstance(v, torch.Tensor):
            bad.append(f"'{k}' is a {type(v).__name__}, not a tensor")
        elif tuple(v.shape) != t.shape:
            bad.append(f"'{k}' has shape {tuple(v.shape)}, expected {t.shape}")
        elif t.dtype in _FLOAT_DTYPES and not v.is_floating_point():
            bad.append(f"'{k}' is {str(v.dtype).replace('torch.', '')}, expected a floating-point tensor")
        elif t.dtype not in _FLOAT_DTYPES and v.is_floating_point():
            bad.append(f"'{k}' is {str(v.dtype).replace('torch.', '')}, expected {t.dtype}")
    if bad:
        more = f" and {len(bad) - _SHOW} more" if len(bad) > _SHOW else ""
        problems.append(f"{name}: {len(bad)} tensor(s) differ: " + "; ".join(bad[:_SHOW]) + more)
    return problems


def _read_file(file: str, path: Path, names: Iterable[str], variant: str,
               models_dir: str | os.PathLike[str] | None = None,
               missing_fix: bool = True) -> tuple[dict[str, dict], list[str]]:
    """Load one file and check the wanted modules; returns (state_dicts, problems). Fixes name
    ``models_dir``, the models folder the file belongs to (``missing_fix=False``: a missing file's problem
    has none, for a caller that says the fix once for all missing files)."""
    fix = download_fix(variant, models_dir=models_dir)
    if not path.is_file():
        return {}, [f"{path}: missing ({file})" + (f"; {download_fix(variant, False, models_dir)}"
                                                   if missing_fix else "")]
    try:
        obj = load_checkpoint(path, variant, models_dir)
        parts = split_file(file, obj)
    except WeightsError as e:
        return {}, [str(e)]
    except ValueError as e:
        return {}, [f"{path}: not the official {file} checkpoint: it {e}; {fix}"]
    out: dict[str, dict] = {}
    problems: list[str] = []
    for name in names:
        p = check_state_dict(name, parts[name])
        if p:
            problems.append(f"{path}: does not match the official layout: " + " | ".join(p)
                            + f"; {fix}")
        else:
            out[name] = parts[name]
    return out, problems


def _files_for(names: Iterable[str]) -> dict[str, list[str]]:
    by_file: dict[str, list[str]] = {}
    for n in names:
        by_file.setdefault(layout.module_layout(n).file, []).append(n)
    return by_file


def read_state_dicts(models_dir: str | os.PathLike[str], variant: str = "human",
                     names: Iterable[str] = layout.MODULE_NAMES) -> dict[str, dict[str, "torch.Tensor"]]:
    """Official state_dicts (stitching file remapped), each file read once, keys and shapes verified.

    Raises ``WeightsError`` listing every problem of every needed file, so one run tells the user all;
    missing files share one fix line (the command that downloads them into ``models_dir``).
    """
    names = list(names)
    files = checkpoint_paths(models_dir, variant)
    out: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    missing = 0
    for file, mods in _files_for(names).items():
        missing += not files[file].is_file()
        got, p = _read_file(file, files[file], mods, variant, models_dir, missing_fix=False)
        out.update(got)
        problems += p
    if missing:
        problems.append(f"to get the missing file{'s' if missing > 1 else ''}, "
                        + download_fix(variant, False, models_dir))
    if problems:
        raise WeightsError("LivePortrait weights are not usable:\n  " + "\n  ".join(problems))
    _log.debug("read %d state_dicts (%s) from %s", len(out), variant, models_root(models_dir))
    return out


# ------------------------------------------------------------------------------------------------
# writing (tests and recipe benchmarks)


def _as_tensor(v: Any) -> "torch.Tensor":
    import numpy as np

    torch = _torch()
    return v if isinstance(v, torch.Tensor) else torch.from_numpy(np.require(v, requirements="C"))  # keeps 0-d arrays 0-d


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write through a temporary file in the same folder, so a crash never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".incomplete", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _torch().save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_checkpoints(models_dir: str | os.PathLike[str],
                      state_dicts: Mapping[str, Mapping[str, "torch.Tensor | np.ndarray"]],
                      variant: str = "human") -> list[Path]:
    """Write state_dicts as the official files (stitching file: three sub-dicts with 'module.' keys).

    Only files whose modules are all given are written; a state_dict that does not match the official
    layout raises ``WeightsError`` before anything is written. Returns the written paths.
    """
    unknown = [n for n in state_dicts if n not in layout.MODULE_NAMES]
    if unknown:
        raise WeightsError(f"unknown module name(s) {_list(unknown)}; known: {', '.join(layout.MODULE_NAMES)}")
    tensors = {n: {k: _as_tensor(v) for k, v in sd.items()} for n, sd in state_dicts.items()}
    problems = [p for n, sd in tensors.items() for p in check_state_dict(n, sd)]
    by_file = _files_for(tensors)
    for file, mods in by_file.items():
        need = layout.modules_in_file(file)
        if set(mods) != set(need):
            problems.append(f"{file} holds {', '.join(need)}: give all of them or none (got {', '.join(mods)})")
    if problems:
        raise WeightsError("cannot write checkpoints:\n  " + "\n  ".join(problems))
    targets = checkpoint_paths(models_dir, variant)
    written: list[Path] = []
    for file in by_file:
        names = layout.modules_in_file(file)
        if len(names) == 1 and layout.module_layout(names[0]).sub_key is None:
            obj: Any = OrderedDict(tensors[names[0]])
        else:
            obj = {layout.module_layout(n).sub_key: OrderedDict((f"module.{k}", v) for k, v in tensors[n].items())
                   for n in names}
        atomic_torch_save(obj, targets[file])
        written.append(targets[file])
    _log.info("wrote %d checkpoint file(s) to %s", len(written), models_root(models_dir))
    return written


# ------------------------------------------------------------------------------------------------
# hashes and the manifest


def sha256_file(path: Path, chunk: int = 4 * 1024 * 1024) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(models_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Relative path -> {"size", "sha256", "source"} for files verified at download time."""
    p = models_root(models_dir) / MANIFEST_NAME
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        files = data.get("files", {})
        return files if isinstance(files, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as e:
        _log.warning("ignoring unreadable weights manifest %s: %s", p, e)
        return {}


def record_verified(models_dir: str | os.PathLike[str], rel: str, size: int, sha256: str, source: str) -> None:
    """Add one verified file to the manifest (written atomically; weight files are never touched)."""
    root = models_root(models_dir)
    files = read_manifest(models_dir)
    files[rel] = {"size": size, "sha256": sha256, "source": source}
    text = json.dumps({"about": "SHA-256 of LivePortrait weight files verified when they were downloaded; "
                                "`liveportrait doctor` compares the files with it.",
                       "files": dict(sorted(files.items()))}, indent=1)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (MANIFEST_NAME + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, root / MANIFEST_NAME)


def expected_checksum(models_dir: str | os.PathLike[str], rel: str) -> tuple[int, str, str] | None:
    """(size, sha256, where it comes from) that ``rel`` should have, or None when nothing is known."""
    if rel in OFFICIAL_CHECKSUMS:
        size, sha = OFFICIAL_CHECKSUMS[rel]
        return size, sha, "official"
    entry = read_manifest(models_dir).get(rel)
    if isinstance(entry, dict) and "sha256" in entry and "size" in entry:
        return int(entry["size"]), str(entry["sha256"]), "download manifest"
    return None


# ------------------------------------------------------------------------------------------------
# verification for doctor and the OBS panel


def verify_models(models_dir: str | os.PathLike[str], variant: str = "human", deep: bool = True,
                  check_hash: bool = True) -> list[FileReport]:
    """One report per official file of ``variant``.

    Shallow: present and of plausible size. ``deep``: also loads each file (safely) and checks keys and
    shapes, and with ``check_hash`` compares the SHA-256 with the official one (or the one recorded at
    download). A file that is not byte-identical to the official one but has the official layout (e.g.
    converted to fp16) is usable but reported "differs", which says so; same size but different bytes is
    corruption: bad. Every fix names ``models_dir`` unless it is the default folder.
    """
    fix = download_fix(variant, models_dir=models_dir)
    reports: list[FileReport] = []
    for file, path in checkpoint_paths(models_dir, variant).items():
        rel = layout.checkpoint_files(variant)[file]
        if not path.is_file():
            reports.append(FileReport(file, path, "missing", None, f"{rel} is missing",
                                      download_fix(variant, False, models_dir)))
            continue
        size = path.stat().st_size
        lo, hi = size_bounds(file)
        if not lo <= size <= hi:
            what = "too small (truncated?)" if size < lo else "too large"
            reports.append(FileReport(file, path, "bad", size,
                                      f"{rel} is {size:,} bytes, {what}: expected {lo:,} to {hi:,} bytes",
                                      fix))
            continue
        if not deep:
            reports.append(FileReport(file, path, "ok", size, f"{rel} present ({size:,} bytes; not loaded)", ""))
            continue
        _, problems = _read_file(file, path, layout.modules_in_file(file), variant, models_dir)
        if problems:
            reports.append(FileReport(file, path, "bad", size, " | ".join(problems), fix))
            continue
        report = FileReport(file, path, "ok", size, f"{rel} matches the official layout ({size:,} bytes)", "")
        if check_hash:
            _compare_hash(models_dir, rel, report, fix)
        reports.append(report)
    return reports


def _compare_hash(models_dir: str | os.PathLike[str], rel: str, report: FileReport, fix: str) -> None:
    expected = expected_checksum(models_dir, rel)
    if expected is None:
        report.message += "; no known SHA-256 to compare with"
        return
    size, sha, source = expected
    report.sha256 = sha256_file(report.path)
    if report.sha256 == sha:
        report.message += f"; SHA-256 matches the {source} hash"
    elif report.size == size:
        report.status = "bad"
        report.message = (f"{rel} is corrupt: same size as the {source} file but a different SHA-256 "
                          f"({report.sha256[:12]}... instead of {sha[:12]}...)")
        report.fix = fix
    else:
        report.status = "differs"
        report.message = (f"{rel} is not the {source} file: {report.size:,} bytes instead of {size:,}, "
                          f"SHA-256 {report.sha256[:12]}... instead of {sha[:12]}...; its keys and shapes match, "
                          f"so it is used, but its results may differ from the official weights")
        report.fix = ("if you did not convert it on purpose (e.g. to fp16), replace it: "
                      + download_fix(models_dir=models_dir, force=True))
