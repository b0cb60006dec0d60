"""The voice in OBS: a Voice group in the panel with every ``audio.*`` setting, the microphone list offered,
"No webcam" offered for the camera, and the "mute voice" / "push to talk" hotkeys driving the engine (press and
release for push to talk); the voice's level in the status line. Fake ``obspython`` (tests/fake_obspython.py)."""
from __future__ import annotations

import pytest

from liveportrait_core import settings as schema
from liveportrait_core.obs import properties
from tests.fake_obspython import FakeObs
from tests.test_obs_script import FakeEngine, finish, loaded_with, make


@pytest.fixture
def obs():
    return FakeObs()


class VoiceEngine(FakeEngine):
    def set_voice_muted(self, muted):
        self._rec("set_voice_muted", muted)

    def set_push_to_talk(self, held):
        self._rec("set_push_to_talk", held)


def test_voice_group_holds_every_audio_setting_and_offers_the_microphones(obs, monkeypatch):
    from liveportrait_core.voice.sources import Microphone

    monkeypatch.setattr("liveportrait_core.voice.sources.list_microphones",
                        lambda sd=None: [Microphone(3, "USB Headset Mic", 1, 48000.0)])
    c, _ = make(obs)
    props = c.build_properties()
    groups = {p.name: p for p in props.props.values() if p.kind == "group"}
    voice = groups["lp.group.voice"]
    assert voice.description == "Voice"
    audio_keys = [k for k, *_ in schema.describe() if k.startswith("audio.") and k != "audio.mode"]
    assert audio_keys and all(properties.group_of(k) == "lp.group.voice" for k in audio_keys)
    inner = voice.content.props if hasattr(voice, "content") else voice.group.props
    assert set(audio_keys) <= set(inner)
    # the mode sits beside the camera list (which offers "No webcam (idle + voice)"), in words
    mode = groups[properties.BASICS_GROUP].group.props["audio.mode"]
    assert mode.description == "Voice" and "audio.mode" not in inner
    assert [v for _t, v in mode.items] == ["off", "fallback", "mix", "always"]
    assert dict((v, t) for t, v in mode.items)["always"] == "Voice only (mouth follows the voice)"
    device = inner["audio.device"]
    offered = [value for _text, value in device.items]
    assert offered[:2] == ["default", "USB Headset Mic"]
    camera = dict((v, t) for t, v in groups[properties.BASICS_GROUP].group.props["capture.source"].items)
    assert "none" in camera


def test_mute_and_push_to_talk_hotkeys_drive_the_engine(obs):
    c, e, data = loaded_with(obs, VoiceEngine)
    names = {hk["name"] for hk in obs.hotkeys.values()}
    assert {"liveportrait.voice.mute", "liveportrait.voice.push_to_talk"} <= names
    hid = next(h for h, hk in obs.hotkeys.items() if hk["name"] == "liveportrait.voice.push_to_talk")
    obs.obs_hotkey_trigger_routed_callback(hid, True)
    assert e.calls[-1] == ("set_push_to_talk", True)  # held ...
    obs.obs_hotkey_trigger_routed_callback(hid, False)
    assert e.calls[-1] == ("set_push_to_talk", False)  # ... and released
    obs.trigger_hotkey("liveportrait.voice.mute")
    assert e.calls[-1] == ("set_voice_muted", True) and c.voice_muted
    obs.trigger_hotkey("liveportrait.voice.mute")
    assert e.calls[-1] == ("set_voice_muted", False)
    finish(obs, c, data)


def test_the_status_line_shows_the_voice_level():
    from liveportrait_core.engine.stats import EngineStatus
    from liveportrait_core.voice.stage import VoiceStatus

    text = VoiceStatus("listening", "microphone 3: USB Headset Mic", db=-23.4, level=0.6, vowel="a").text()
    assert text == "voice -23 dB ▮▮▮▯▯ A"
    st = EngineStatus(state="running", character="astro.png", frames=10, fps=30.0, voice=text)
    assert text in st.line()
    assert VoiceStatus("lost", message="unplugged").text() == "voice lost: unplugged"
    # a file's digital silence (all-zero blocks) read "voice -120 dB ▮▯▯▯▯" while the mouth closed (preview run)
    assert VoiceStatus("listening", db=-120.0, level=0.2).text() == "voice silent ▮▯▯▯▯"


def test_voice_doc_lists_every_audio_setting_with_its_default():
    """docs/VOICE.md's settings table against the schema (the defaults live in settings.py only)."""
    import re

    from tests.conftest import REPO

    doc = (REPO / "docs" / "VOICE.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(audio\.\w+)` \| `([^`]*)` \|", doc, flags=re.M))
    audio = schema.Settings().audio
    assert set(rows) == {f"audio.{k}" for k in vars(audio)}
    for key, text in rows.items():
        default = getattr(audio, key.split(".", 1)[1])
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert text == shown or (isinstance(default, float) and float(text) == default), (key, text, default)


def test_voice_labels_name_their_units():
    """The panel showed "Gain db" and "Attack ms" (seen in a screenshot of the Scripts dialog in OBS 29)."""
    assert properties.label("audio.gain_db") == "Gain (dB)"
    assert properties.label("audio.attack_ms") == "Attack (ms)"
    assert properties.label("audio.block_ms") == "Block (ms)"
