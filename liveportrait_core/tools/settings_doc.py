"""docs/SETTINGS.md, generated from the settings schema so that the reference never drifts from the code.

Regenerate after changing ``settings.py``::

    python -m liveportrait_core.tools.settings_doc > docs/SETTINGS.md

(tests/test_settings.py fails when the committed file differs from what this renders).
"""
from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any

from liveportrait_core import settings as settings_mod

_HEADER = """\
# Settings reference

Every setting of LivePortrait for OBS, generated from `liveportrait_core/settings.py` by
`python -m liveportrait_core.tools.settings_doc > docs/SETTINGS.md` (do not edit by hand).

The same settings drive the OBS script and the command line. On the command line, give a YAML file with
`--config FILE` and override single values with `--set section.key=value` (repeatable), e.g.

```
liveportrait preview --config my_settings.yaml --set animation.region=exp --set outputs.ndi=true
```

A YAML file holds any subset of the sections below; what it leaves out keeps its default. Wrong names,
types and values are refused with a message that names the key and what is allowed; every mistake in the
file is listed at once, one line each. Relative folders are relative to the project folder.
True/false values also accept yes/no, on/off and 1/0.

```yaml
animation:
  region: exp
  driving_multiplier: 1.2
outputs:
  ndi: true
```
"""


def _allowed(tp: Any, meta: typing.Mapping[str, Any]) -> str:
    if "choices" in meta:
        return ", ".join(f"`{c}`" for c in meta["choices"])
    kind = settings_mod._type_name(tp)
    if "min" in meta or "max" in meta:
        return f"{kind}, {meta.get('min', '-inf')} to {meta.get('max', 'inf')}"
    return kind


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(v: Any) -> str:
    if isinstance(v, bool):
        return "`true`" if v else "`false`"
    if isinstance(v, str):
        return f"`{v}`" if v else "(empty)"
    if isinstance(v, list):
        return "`[]`" if not v else f"`{v}`"
    return f"`{v}`"


def render() -> str:
    """The whole reference as Markdown: one table per section, one row per setting."""
    root = settings_mod.Settings()
    hints = typing.get_type_hints(settings_mod.Settings)
    lines = [_HEADER]
    top: list[str] = []
    for f in dataclasses.fields(root):
        value = getattr(root, f.name)
        if not dataclasses.is_dataclass(value):
            top.append(f"| `{f.name}` | {_default(value)} | {_allowed(hints[f.name], f.metadata)} | "
                       f"{_cell(f.metadata.get('help', ''))} |")
            continue
        section_hints = typing.get_type_hints(type(value))
        lines.append(f"\n## `{f.name}`\n\n{(type(value).__doc__ or '').strip()}\n")
        lines.append("| setting | default | allowed | what it does |\n|---|---|---|---|")
        for sf in dataclasses.fields(value):
            lines.append(f"| `{f.name}.{sf.name}` | {_default(getattr(value, sf.name))} | "
                         f"{_allowed(section_hints[sf.name], sf.metadata)} | {_cell(sf.metadata.get('help', ''))} |")
    if top:
        lines.append("\n## Top level\n\n| setting | default | allowed | what it does |\n|---|---|---|---|")
        lines += top
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
