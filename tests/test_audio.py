import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tts.audio import (DEFAULT_AUDIO, LIMIT_CEILING, LIMIT_KNEE, AudioConfig, AudioFileError, load_audio,
                       mel_basis, mel_spectrogram, mel_spectrogram_torch, mu_law_decode, mu_law_encode, normalize_loudness,
                       normalize_peak, soft_limit, to_pcm16, trim_silence, write_audio)

SR = DEFAULT_AUDIO.sample_rate


def tone(freq=440.0, seconds=0.5, sr=SR, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_config_defaults_and_roundtrip():
    c = AudioConfig()
    assert (c.sample_rate, c.n_fft, c.win_length, c.hop_length, c.n_mels, c.fmax) == (16000, 1024, 800, 200, 80, 8000)
    assert AudioConfig.from_dict(c.to_dict()) == c
    assert c.fingerprint() != AudioConfig(n_mels=40).fingerprint()
    with pytest.raises(ValueError, match="unknown"):
        AudioConfig.from_dict({**c.to_dict(), "bogus": 1})
    with pytest.raises(Exception):
        c.n_mels = 10  # frozen


@pytest.mark.parametrize("sr,channels", [(16000, 1), (22050, 1), (44100, 2), (8000, 2)])
def test_load_any_rate_and_channels(tmp_path, sr, channels):
    x = tone(sr=sr, seconds=0.4)
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    path = tmp_path / "in.flac"
    sf.write(path, data, sr)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 0.4 * SR) <= 2
    # The tone survives resampling: its spectrum peaks at 440 Hz.
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * SR / len(y) - 440) < 5


def test_load_errors(tmp_path):
    with pytest.raises(AudioFileError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(AudioFileError, match="cannot read"):
        load_audio(bad)


@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_write_roundtrip_is_atomic(tmp_path, ext):
    x = tone()
    path = write_audio(tmp_path / f"out{ext}", x)
    y, sr = sf.read(path, dtype="float32")
    assert sr == SR and len(y) == len(x)
    assert np.abs(y - x).max() < 1e-4  # 16-bit quantization
    assert [p.name for p in tmp_path.iterdir()] == [f"out{ext}"]  # no temporary left behind


def test_write_errors(tmp_path):
    with pytest.raises(AudioFileError, match="format"):
        write_audio(tmp_path / "out.mp3", tone())
    with pytest.raises(AudioFileError, match="folder"):
        write_audio(tmp_path / "nope" / "out.wav", tone())


def test_trim_and_levels():
    x = np.concatenate([np.zeros(8000, np.float32), tone(seconds=0.5), np.zeros(8000, np.float32)])
    y = trim_silence(x, pad=0)
    assert 7000 < len(y) < 9500
    assert np.isclose(np.abs(normalize_peak(x, 0.9)).max(), 0.9)
    z = normalize_loudness(tone(amp=0.01), target_dbfs=-20)
    assert np.isclose(20 * np.log10(np.sqrt(np.mean(z ** 2))), -20, atol=0.1)
    assert not normalize_peak(np.zeros(10, np.float32)).any()


def test_mel_shape_range_and_backends_agree():
    x = tone(seconds=1.0)
    m = mel_spectrogram(x)
    assert m.shape == (DEFAULT_AUDIO.n_frames(len(x)), 80) == (81, 80)
    assert m.dtype == np.float32 and m.min() >= 0.0 and m.max() <= 1.0
    assert m.max() > 0.5  # a loud tone is well above the floor
    assert not mel_spectrogram(np.zeros(4000, np.float32)).any()  # silence is the floor, 0
    mt = mel_spectrogram_torch(torch.from_numpy(np.stack([x, 0.5 * x])))
    assert mt.shape == (2, 81, 80)
    np.testing.assert_allclose(mt[0].numpy(), m, atol=1e-4)
    # The 440 Hz tone lands in the right band: the loudest band's centre is near 440 Hz.
    import librosa
    centres = librosa.mel_frequencies(82, fmin=0, fmax=8000)[1:-1]
    assert abs(centres[m[40].argmax()] - 440) < 80


def test_mu_law_roundtrip():
    x = np.linspace(-1, 1, 10001, dtype=np.float32)
    c = mu_law_encode(x)
    assert c.min() == 0 and c.max() == 255 and c.dtype == np.int64
    assert mu_law_encode(np.zeros(1))[0] == 128
    assert np.all(np.diff(c) >= 0)  # monotonic
    y = mu_law_decode(c)
    # mu-law error is relative: small near zero, larger near full scale.
    assert np.all(np.abs(y - x) <= 0.025 * np.abs(x) + 2e-4)
    assert np.array_equal(mu_law_encode(mu_law_decode(np.arange(256))), np.arange(256))
    ct = mu_law_encode(torch.from_numpy(x))
    assert torch.equal(ct, torch.from_numpy(c))
    np.testing.assert_allclose(mu_law_decode(ct).numpy(), y, atol=1e-6)


def test_written_files_are_readable_by_others(tmp_path):
    path = write_audio(tmp_path / "out.wav", tone())
    assert path.stat().st_mode & 0o777 == 0o644


# --- the soft limiter ---------------------------------------------------------------------

SAMPLES = st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=200)


@settings(max_examples=300, deadline=None)
@given(SAMPLES)
def test_soft_limit_never_clips_and_leaves_what_is_below_the_knee(samples):
    x = np.array(samples, dtype=np.float32)
    y = soft_limit(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.all(np.abs(y) <= LIMIT_CEILING) and np.all(np.abs(y) < 1.0)
    below = np.abs(x) <= LIMIT_KNEE
    assert np.array_equal(y[below], x[below])  # exactly, not nearly
    pcm = to_pcm16(y)
    assert np.all(np.abs(pcm.astype(np.int32)) < 32767)  # never full scale
    assert np.array_equal(pcm[below], np.round(x[below] * 32767.0).astype(np.int16))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, width=32), min_size=2, max_size=200))
def test_soft_limit_is_smooth_odd_and_keeps_the_order_of_samples(samples):
    x = np.sort(np.array(samples, dtype=np.float32))
    y = soft_limit(x)
    assert np.all(np.diff(y) >= 0)  # louder stays louder
    assert np.array_equal(soft_limit(-x), -y)
    # Slope at most 1: nothing jumps, and a sample is moved no further than it is over the knee.
    assert np.all(np.abs(np.diff(y)) <= np.diff(x) * (1 + 1e-6) + 1e-7)
    assert np.all(np.abs(y - x) <= np.maximum(np.abs(x) - LIMIT_KNEE, 0) + 1e-7)


@settings(max_examples=200, deadline=None)
@given(SAMPLES, st.lists(st.integers(0, 200), max_size=5))
def test_soft_limit_chunk_by_chunk_is_the_whole_at_once(samples, cuts):
    x = np.array(samples, dtype=np.float32)
    chunks = np.split(x, sorted(min(c, len(x)) for c in cuts))
    assert np.array_equal(np.concatenate([soft_limit(c) for c in chunks]), soft_limit(x))


@pytest.mark.parametrize("changes", [{}, {"n_fft": 512, "n_mels": 64, "fmin": 50.0, "fmax": 7600.0}])
def test_the_mel_filterbank_is_librosas(changes):
    import dataclasses

    import librosa

    config = dataclasses.replace(DEFAULT_AUDIO, **changes)
    expected = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                                   fmin=config.fmin, fmax=config.fmax)
    np.testing.assert_array_equal(mel_basis(config), expected)


def test_tempo_speeds_speech_up_keeping_pitch_range_and_chunking():
    from tts.audio import Tempo

    t = np.arange(3 * SR) / SR
    sine = (0.5 * np.sin(2 * np.pi * 200 * t) * (1 + 0.5 * np.sin(2 * np.pi * t))).astype(np.float32)
    for speed in (1.25, 1.5, 2.0):
        whole = Tempo(speed)(sine, last=True)
        assert len(whole) == round(len(sine) / speed)
        assert np.abs(whole[-SR // 10:]).max() > 0.2  # the end is there, not cut
        spectrum = np.abs(np.fft.rfft(whole[: SR // 2]))
        assert np.argmax(spectrum) * 2 == 200  # the pitch stays at 200 Hz (2 Hz bins)
        assert np.abs(whole).max() <= np.abs(sine).max() + 1e-6  # weighted means: no new peaks
        tempo = Tempo(speed)
        cuts = [0, 1, 500, 8000, 8001, 30000, len(sine)]
        pieces = [tempo(sine[a:b], last=b == len(sine)) for a, b in zip(cuts, cuts[1:])]
        assert np.array_equal(np.concatenate(pieces), whole)  # a stream is the whole at once
    again = Tempo(2.0)
    first = again(sine, last=True)
    assert np.array_equal(again(sine, last=True), first)  # after the last chunk it starts afresh
    with pytest.raises(ValueError, match="speed must be >= 1"):
        Tempo(0.5)
