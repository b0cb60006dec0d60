"""Voice drives the mouth: audio sources on their own thread, loudness and vowel features per block, and the
mapping of those features onto the mouth controls (docs/VOICE.md).

Modules: ``ring`` (the small ring buffer between an audio callback and the voice thread), ``resample`` (every
source to one analysis rate), ``sources`` (microphone through PortAudio, audio/video files), ``features``
(RMS dBFS, gate, gain, attack/release, vowel from LPC formants), ``mouth`` (features -> lip-open ratio and
vowel weights, the modes), ``stage`` (the voice thread and its latest-value hand-off), ``tape`` and ``mux``
(the audio track of a recording). Import the full module path.
"""
