"""The one settings schema: defaults, YAML, validation messages, overrides, and the generated reference."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from liveportrait_core import settings as S
from liveportrait_core.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parents[1]


def _error(fn, *args) -> str:
    with pytest.raises(SettingsError) as e:
        fn(*args)
    return str(e.value)


# ------------------------------------------------------------------------------------------------
# defaults and YAML


def test_defaults():
    s = Settings()
    assert s.model.models_dir == "models" and s.model.variant == "human" and s.model.device == "auto"
    assert s.characters.folder == "characters" and s.characters.extra_folders == []
    assert s.animation.region == "all" and s.animation.relative_motion is True
    assert s.outputs.obs_source is True and s.outputs.spout is False
    assert s.log_level == "INFO"


def test_every_default_passes_its_own_validation():
    for key, default, help_text, meta in S.describe():
        assert help_text, f"{key} has no help"
        assert S.apply_overrides(Settings(), {key: default}).get(key) == default, key


def test_list_defaults_are_not_shared_between_instances():
    a, b = Settings(), Settings()
    a.characters.extra_folders.append("x")
    assert b.characters.extra_folders == []


def test_yaml_round_trip():
    s = S.apply_overrides(Settings(), ["animation.region=exp", "capture.fps=60", "outputs.ndi=on",
                                       "characters.extra_folders=a, b", "tracking.beta=0.2"])
    text = S.dump(s)
    again = S.from_dict(yaml.safe_load(text))
    assert again == s
    assert again.characters.extra_folders == ["a", "b"] and again.outputs.ndi is True


def test_load_from_file_keeps_the_file_and_the_other_defaults(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("animation:\n  region: pose\n  driving_multiplier: 1.5\ncapture:\n  source: clip.mp4\n")
    before = p.read_bytes()
    s = S.load(p)
    assert s.animation.region == "pose" and s.animation.driving_multiplier == 1.5
    assert s.capture.source == "clip.mp4" and s.capture.fps == 30
    assert p.read_bytes() == before


def test_empty_file_gives_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("")
    assert S.load(p) == Settings()


def test_save_and_load(tmp_path):
    s = S.apply_overrides(Settings(), {"model.precision": "fp16"})
    p = tmp_path / "s.yaml"
    S.save(s, p)
    assert S.load(p) == s
    assert [x.name for x in tmp_path.iterdir()] == ["s.yaml"]


def test_unreadable_and_invalid_files(tmp_path):
    assert "cannot read settings file" in _error(S.load, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("animation: [unclosed\n")
    assert "is not valid YAML" in _error(S.load, bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    assert "must be a mapping" in _error(S.load, top)


def test_file_errors_name_the_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("capture:\n  fps: 1000\n")
    msg = _error(S.load, p)
    assert str(p) in msg and "capture.fps" in msg


# ------------------------------------------------------------------------------------------------
# validation messages


def test_wrong_type():
    msg = _error(S.from_dict, {"capture": {"width": "wide"}})
    assert msg == "setting 'capture.width': 'wide' is not an integer"
    assert "is not true/false" in _error(S.from_dict, {"capture": {"mirror": "maybe"}})
    assert "is not a number" in _error(S.from_dict, {"animation": {"driving_multiplier": [1]}})
    assert "is not an integer" in _error(S.from_dict, {"capture": {"fps": 29.5}})
    assert "is not an integer" in _error(S.from_dict, {"capture": {"fps": True}})
    assert "not a finite number" in _error(S.from_dict, {"tracking": {"beta": "nan"}})


def test_conversions_that_are_allowed():
    s = S.from_dict({"capture": {"fps": 60.0, "mirror": "yes", "source": 1}, "animation": {"region": "EXP"}})
    assert s.capture.fps == 60 and s.capture.mirror is True and s.capture.source == "1"
    assert s.animation.region == "exp"


def test_out_of_range():
    assert _error(S.from_dict, {"capture": {"fps": 0}}) == "setting 'capture.fps': 0 is out of range; allowed: 1 to 240"
    assert "out of range" in _error(S.from_dict, {"animation": {"driving_multiplier": 3.5}})


def test_choice_not_allowed_with_suggestion():
    msg = _error(S.from_dict, {"animation": {"region": "expr"}})
    assert "allowed: all, exp, pose, lip, eyes" in msg and "did you mean 'exp'?" in msg


def test_unknown_key_with_suggestion():
    msg = _error(S.from_dict, {"animation": {"regoin": "exp"}})
    assert msg.startswith("unknown setting 'animation.regoin' (did you mean 'animation.region'?)")
    assert "known here:" in msg and "driving_multiplier" in msg
    assert "did you mean 'animation'?" in _error(S.from_dict, {"animatoin": {"region": "exp"}})
    assert "did you mean 'log_level'?" in _error(S.from_dict, {"log_levl": "DEBUG"})


def test_section_must_be_a_mapping():
    assert "setting 'capture' must be a mapping" in _error(S.from_dict, {"capture": 5})


def test_every_mistake_in_a_file_is_reported_at_once(tmp_path):
    """Five mistakes, one run: one line per bad key (with its path) in a single SettingsError."""
    p = tmp_path / "five.yaml"
    p.write_text("capture:\n  fps: 1000\n  mirror: maybe\n"
                 "animation:\n  regoin: exp\n  driving_multiplier: lots\n"
                 "outputs: 5\n"
                 "model:\n  device: cpu\n")  # the one good key among them
    with pytest.raises(SettingsError) as e:
        S.load(p)
    keys = ["capture.fps", "capture.mirror", "animation.regoin", "animation.driving_multiplier", "'outputs'"]
    assert len(e.value.errors) == 5
    for key, line in zip(keys, e.value.errors):
        assert key in line and "\n" not in line
    msg = str(e.value)
    assert msg.splitlines()[0] == f"{p}: 5 settings are wrong:"
    assert msg.splitlines()[1:] == [f"  {line}" for line in e.value.errors]
    assert "did you mean 'animation.region'?" in msg and "out of range" in msg


def test_every_bad_override_is_reported_at_once():
    with pytest.raises(SettingsError) as e:
        S.apply_overrides(Settings(), ["capture.fps=0", "animation.region", "animation.region=exp",
                                       "outputs.nope=1"])
    assert [line.split(":")[0] for line in e.value.errors] == [
        "setting 'capture.fps'",
        "override 'animation.region' must look like section.key=value, e.g. animation.region=exp",
        "unknown setting 'outputs.nope'; known here"]
    assert str(e.value).startswith("3 settings are wrong:\n  setting 'capture.fps'")


# ------------------------------------------------------------------------------------------------
# overrides


def test_apply_overrides_returns_a_validated_copy():
    base = Settings()
    s = S.apply_overrides(base, ["animation.region=exp", "capture.source = 1 "])
    assert s.animation.region == "exp" and s.capture.source == "1"
    assert base.animation.region == "all"


def test_bad_override_syntax():
    assert "must look like section.key=value" in _error(S.apply_overrides, Settings(), ["animation.region"])
    assert "unknown setting 'animation.nope'" in _error(S.apply_overrides, Settings(), ["animation.nope=1"])
    assert "setting 'animation' must be a mapping" in _error(S.apply_overrides, Settings(), ["animation=exp"])


def test_obs_style_flat_dict_override():
    s = S.apply_overrides(Settings(), {"animation.driving_multiplier": 1.25, "outputs.ndi": True,
                                       "characters.extra_folders": ["D:/art"], "log_level": "debug"})
    assert s.animation.driving_multiplier == 1.25 and s.outputs.ndi is True
    assert s.characters.extra_folders == ["D:/art"] and s.log_level == "DEBUG"
    assert "out of range" in _error(S.apply_overrides, Settings(), {"capture.width": 10})


def test_get_by_dotted_key():
    assert Settings().get("tracking.crop_scale") == 2.2


# ------------------------------------------------------------------------------------------------
# CLI --set (through cli.main)


@pytest.fixture
def seen_settings(monkeypatch):
    """Run the doctor command with its checks replaced, to see the settings the CLI built."""
    from liveportrait_core.tools import doctor

    seen: dict[str, Settings] = {}

    def capture(s):
        seen["s"] = s
        return []

    monkeypatch.setattr(doctor, "run_checks", capture)
    return seen


def test_cli_set_override(seen_settings, capsys):
    from liveportrait_core.cli import main as cli

    assert cli.main(["doctor", "--json", "--set", "animation.region=lip", "--set", "capture.fps=50"]) == 0
    s = seen_settings["s"]
    assert s.animation.region == "lip" and s.capture.fps == 50


def test_cli_config_then_set_then_shortcut(seen_settings, tmp_path, capsys):
    from liveportrait_core.cli import main as cli

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  models_dir: from_file\n  variant: animal\nanimation:\n  region: pose\n")
    cli.main(["doctor", "--json", "--config", str(cfg), "--set", "animation.region=eyes",
              "--set", "model.models_dir=from_set", "--models-dir", "from_flag"])
    s = seen_settings["s"]
    assert s.model.variant == "animal" and s.animation.region == "eyes" and s.model.models_dir == "from_flag"


def test_cli_bad_override_exits_2_with_the_message(seen_settings, capsys):
    from liveportrait_core.cli import main as cli

    assert cli.main(["doctor", "--set", "animation.regoin=exp"]) == 2
    err = capsys.readouterr().err
    assert "error: unknown setting 'animation.regoin' (did you mean 'animation.region'?)" in err
    assert cli.main(["doctor", "--set", "novalue"]) == 2
    assert "must look like section.key=value" in capsys.readouterr().err
    assert "s" not in seen_settings


def test_cli_bad_config_file_exits_2(tmp_path, capsys):
    from liveportrait_core.cli import main as cli

    assert cli.main(["doctor", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read settings file" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# the generated reference


def test_settings_doc_lists_every_setting():
    doc = (REPO / "docs" / "SETTINGS.md").read_text(encoding="utf-8")
    for key, _, help_text, _ in S.describe():
        assert f"| `{key}` |" in doc, f"docs/SETTINGS.md lacks {key}"


def test_settings_doc_is_up_to_date():
    from liveportrait_core.tools import settings_doc

    doc = (REPO / "docs" / "SETTINGS.md").read_text(encoding="utf-8")
    assert doc == settings_doc.render(), \
        "docs/SETTINGS.md is stale: run `python -m liveportrait_core.tools.settings_doc > docs/SETTINGS.md`"


def test_settings_sections_are_documented():
    sections = [v for v in vars(Settings()).values() if dataclasses.is_dataclass(v)]
    assert len(sections) == 9
    for section in sections:
        assert (type(section).__doc__ or "").strip(), type(section).__name__
