"""The voice the package ships: a fresh install speaks it with no argument."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tts import Synthesizer
from tts.voice import BUNDLED_VOICE, load_voice

pytestmark = pytest.mark.skipif(not (BUNDLED_VOICE / "config.json").is_file(),
                                reason="this checkout has no bundled voice")


def test_the_bundled_voice_is_complete_small_and_described():
    voice = load_voice()  # checksums, shapes and strict keys are checked on load
    assert voice.default_vocoder in ("wavenet", "griffin-lim")
    size = sum(p.stat().st_size for p in BUNDLED_VOICE.iterdir())
    assert size <= 30 * 2**20
    card = (BUNDLED_VOICE / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "joe" in card and "CC0" in card and "LJ Speech" in card


def test_load_with_no_argument_speaks_the_bundled_voice():
    synth = Synthesizer.load()
    audio = synth.synthesize("Hello.")
    assert 0.2 < len(audio) / synth.sample_rate < 3.0
    assert np.abs(audio).max() > 0.05  # sound, not silence


def test_synthesize_with_no_voice_option(tmp_path):
    out = tmp_path / "hello.wav"
    r = subprocess.run([sys.executable, "-m", "tts", "Hello, world.", "-o", str(out)], capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    audio, sr = sf.read(out)
    assert sr == 16000 and len(audio) > 0.3 * sr
