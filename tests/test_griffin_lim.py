"""Griffin-Lim: mel -> audio without a WaveNet, as a vocoder choice of the Synthesizer and the
one a voice names as its default while its WaveNet has not yet beaten it."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
from voices import TINY_SAMPLES_PER_SYMBOL, make_tiny_voice

from tts import SynthesisError, Synthesizer
from tts.audio import DEFAULT_AUDIO, griffin_lim, griffin_lim_stream, mel_spectrogram
from tts.vocoder.runtime import FIRST_CHUNK_FRAMES
from tts.text import to_phonemes
from tts.voice import VoiceError, load_voice, set_default_vocoder


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    return make_tiny_voice(tmp_path_factory.mktemp("gl") / "voice")


def test_griffin_lim_inverts_a_mel():
    sr, hop = DEFAULT_AUDIO.sample_rate, DEFAULT_AUDIO.hop_length
    t = np.arange(sr) / sr
    x = sum(0.3 / k * np.sin(2 * np.pi * 140 * k * t) for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    mel = mel_spectrogram(x.astype(np.float32))[: sr // hop]
    audio = griffin_lim(mel, seed=0)
    assert audio.dtype == np.float32 and audio.shape == (len(mel) * hop,)
    again = mel_spectrogram(audio)[: len(mel)]
    assert np.abs(again - mel)[4:-4].mean() < 0.03  # the same spectrum, with phase of its own
    assert np.array_equal(griffin_lim(mel, seed=0), audio) and not np.array_equal(griffin_lim(mel, seed=1), audio)
    assert griffin_lim(mel[:0]).shape == (0,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "n_fft is too large" from librosa for a short mel
        assert griffin_lim(mel[:2]).shape == (2 * hop,)


def test_griffin_lim_in_pieces_joins_without_a_seam():
    """Streamed Griffin-Lim: pieces of the asked sizes that add up to the mel's audio, as
    close to its spectrum as Griffin-Lim on the whole, and no jump where they join."""
    sr, hop = DEFAULT_AUDIO.sample_rate, DEFAULT_AUDIO.hop_length
    t = np.arange(sr) / sr
    x = sum(0.3 / k * np.sin(2 * np.pi * 140 * k * t) for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    mel = mel_spectrogram(x.astype(np.float32))[: sr // hop]
    pieces = list(griffin_lim_stream(mel, seed=0, first_frames=8, frames=20, lookahead=8))
    assert [len(p) // hop for p in pieces] == [8, 20, 20, 20, 12]
    audio = np.concatenate(pieces)
    error = np.abs(mel_spectrogram(audio)[: len(mel)] - mel)[4:-4].mean()
    assert error < 1.2 * np.abs(mel_spectrogram(griffin_lim(mel, seed=0))[: len(mel)] - mel)[4:-4].mean()
    steps = np.abs(np.diff(audio))
    joins = np.cumsum([len(p) for p in pieces])[:-1]
    assert steps[joins - 1].max() < 2 * np.percentile(steps, 99)
    assert np.array_equal(np.concatenate(list(griffin_lim_stream(mel, seed=0, first_frames=8, frames=20,
                                                                 lookahead=8))), audio)
    assert list(griffin_lim_stream(mel[:0])) == []
    assert np.concatenate(list(griffin_lim_stream(mel[:1]))).shape == (hop,)
    with pytest.raises(ValueError, match="first_frames"):
        next(griffin_lim_stream(mel, frames=0))


def test_the_synthesizer_speaks_with_griffin_lim(voice):
    synth = Synthesizer.load(voice, vocoder="griffin-lim")
    assert synth.backend == "griffin-lim"
    chunks = list(synth.stream("Hello there. Bye.", seed=4))
    assert len(chunks[0].audio) == FIRST_CHUNK_FRAMES * DEFAULT_AUDIO.hop_length
    whole = synth.synthesize("Hello there. Bye.", seed=4)
    assert np.array_equal(np.concatenate([c.audio for c in chunks]), whole)
    expected = sum((len(to_phonemes(s)) + 1) * TINY_SAMPLES_PER_SYMBOL for s in ("Hello there.", "Bye."))
    assert len(whole) == expected
    with pytest.raises(SynthesisError, match="griffin-lim"):
        Synthesizer.load(voice, vocoder="griffin-lim", weights="bf16")


def test_a_voice_names_its_default_vocoder(voice, tmp_path):
    import shutil

    copy = shutil.copytree(voice, tmp_path / "v")
    assert load_voice(copy).default_vocoder == "wavenet"
    set_default_vocoder(copy, "griffin-lim")
    assert Synthesizer.load(copy).backend == "griffin-lim"
    assert Synthesizer.load(copy, vocoder="numba").backend == "numba"  # asked for: the WaveNet
    with pytest.raises(VoiceError, match="unknown default_vocoder 'hifigan'"):
        set_default_vocoder(copy, "hifigan")
    config = json.loads((copy / "config.json").read_text())
    config["default_vocoder"] = "hifigan"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(VoiceError, match="default_vocoder"):
        load_voice(copy)


def test_cli_griffin_lim(voice, tmp_path):
    out = tmp_path / "gl.wav"
    r = subprocess.run([sys.executable, "-m", "tts", "Hello.", "-o", str(out), "--voice", str(voice),
                        "--vocoder", "griffin-lim"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    audio, sr = sf.read(out)
    assert sr == 16000 and len(audio) == (len(to_phonemes("Hello.")) + 1) * TINY_SAMPLES_PER_SYMBOL
