"""Voicing-dependent sampling: the pitch correlation, the detector fitted to it, the voice
folder that carries it, and the vocoder that samples with it."""

import numpy as np
import pytest
import torch

from tts.audio import DEFAULT_AUDIO, mel_spectrogram
from tts.voice import VoiceError, load_voice, save_model
from tts.vocoder.voicing import VoicingConfig, VoicingDetector, fit_voicing, pitch_correlation
from tts.vocoder.choice import VocoderChoice
from tts.vocoder.runtime import WaveNetVocoder

from tests.voices import make_tiny_voice

SR, HOP = DEFAULT_AUDIO.sample_rate, DEFAULT_AUDIO.hop_length


def harmonic(f0: float, seconds: float = 1.0) -> np.ndarray:
    """A voiced stand-in: five harmonics of f0."""
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)).astype(np.float32) * 0.3


def noise(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def test_pitch_correlation_tells_a_periodic_signal_from_noise_and_silence():
    voiced = pitch_correlation(harmonic(140.0), HOP, SR)
    unvoiced = pitch_correlation(noise(), HOP, SR)
    silent = pitch_correlation(np.zeros(SR, np.float32), HOP, SR)
    assert voiced.shape == unvoiced.shape == (SR // HOP + 1,)  # the mel's frames
    assert np.median(voiced[2:-2]) > 0.97
    assert np.median(unvoiced) < 0.4
    assert np.abs(silent).max() < 1e-6
    # A 70 Hz and a 380 Hz voice are both within the searched periods.
    assert np.median(pitch_correlation(harmonic(70.0), HOP, SR)[3:-3]) > 0.95
    assert np.median(pitch_correlation(harmonic(380.0), HOP, SR)[2:-2]) > 0.95


@pytest.fixture(scope="module")
def detector():
    audio = [harmonic(f0) for f0 in (100.0, 160.0, 230.0)] + [noise(seed=s) for s in range(3)]
    mels = [mel_spectrogram(a)[: len(a) // HOP] for a in audio]
    correlations = [pitch_correlation(a, HOP, SR)[: len(m)] for a, m in zip(audio, mels)]
    return fit_voicing(mels, correlations, VoicingConfig(strength=1.5))


def test_the_fitted_detector_finds_voiced_frames_from_the_mel_alone(detector):
    voiced = detector(torch.from_numpy(mel_spectrogram(harmonic(190.0))))  # an unseen pitch
    unvoiced = detector(torch.from_numpy(mel_spectrogram(noise(seed=9))))
    assert voiced.median() > 0.8 and unvoiced.median() < 0.5
    # Sharpness is 1 + strength * max(0, 1.5 g - 0.5): up to 2.5 on voiced frames, 1 on noise.
    sharp = detector.sharpness(torch.from_numpy(mel_spectrogram(harmonic(190.0))))
    dull = detector.sharpness(torch.from_numpy(mel_spectrogram(noise(seed=9))))
    assert sharp.dtype == np.float32 and sharp.min() >= 1.0 and sharp.max() <= 2.5
    assert np.median(sharp) > 2.0 and np.median(dull) < 1.3


def test_fit_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one correlation per frame"):
        fit_voicing([np.zeros((5, 80), np.float32)], [np.zeros(4, np.float32)])
    with pytest.raises(ValueError, match="strength must be in"):
        VoicingConfig(strength=0.0)


def test_a_voice_carries_its_detector_and_the_wavenet_samples_with_it(detector, tmp_path):
    path = make_tiny_voice(tmp_path / "v")
    plain = load_voice(path)
    assert plain.voicing is None  # a voice without one samples at its temperature everywhere
    save_model(path, "voicing", detector)
    voice = load_voice(path)
    assert isinstance(voice.voicing, VoicingDetector) and voice.voicing.config.strength == 1.5
    for key, value in detector.state_dict().items():
        assert torch.equal(voice.voicing.state_dict()[key], value)

    mel = torch.from_numpy(mel_spectrogram(harmonic(150.0, 0.5)))  # voiced throughout
    outputs = {}
    for name, v in (("plain", plain), ("voiced", voice)):
        vocoder = WaveNetVocoder.from_voice(v, VocoderChoice("wavenet", "numba"), torch.device("cpu"))
        assert (vocoder.sharpness is None) == (name == "plain")
        chunks = list(vocoder.stream(mel, np.random.default_rng(0)))
        outputs[name] = np.concatenate([audio for audio, _ in chunks])
        assert chunks[-1][1] and len(outputs[name]) == len(mel) * HOP
    # The same random numbers, sharper distributions: other samples.
    assert not np.array_equal(outputs["plain"], outputs["voiced"])
    # The torch reference draws the same samples as the numba kernel.
    reference = WaveNetVocoder.from_voice(voice, VocoderChoice("wavenet", "torch"), torch.device("cpu"))
    short = mel[:6]
    np.testing.assert_array_equal(
        np.concatenate([a for a, _ in reference.stream(short, np.random.default_rng(1))]),
        np.concatenate([a for a, _ in WaveNetVocoder.from_voice(voice, VocoderChoice("wavenet", "numba"), torch.device("cpu"))
                        .stream(short, np.random.default_rng(1))]))


def test_a_damaged_detector_is_refused(detector, tmp_path):
    path = make_tiny_voice(tmp_path / "v")
    save_model(path, "voicing", detector)
    (path / "voicing.safetensors").write_bytes(b"not weights")
    with pytest.raises(VoiceError, match="checksum"):
        load_voice(path).voicing


def test_the_engine_and_the_training_evaluation_hear_the_same_audio(detector, tmp_path):
    """One path from mel to audio: the synthesizer's sentence, `WaveNet.vocode` with the
    same seed, and the vocoder task's evaluation sample (started from the voice) are the same
    samples, voicing sharpness and filter included."""
    from tts import Synthesizer
    from tts.train.tasks.vocoder import VocoderTask, VocoderTaskConfig
    from tts.text import phonemize_words

    path = make_tiny_voice(tmp_path / "v")
    save_model(path, "voicing", detector)
    synth = Synthesizer.load(path, device="cpu")
    assert synth.vocoder.sharpness is not None
    text = "Hello there."
    heard = synth.synthesize(text, seed=3)
    mel, _ = synth.sentence_mel(phonemize_words(text, synth.g2p)[0])
    wavenet = synth.voice.wavenet
    np.testing.assert_array_equal(wavenet.vocode(mel, seed=(3, 0), voicing=synth.voice.voicing), heard)
    np.testing.assert_array_equal(wavenet.vocode(mel, seed=(3, 0), voicing=synth.voice.voicing, backend="torch"),
                                  heard)
    # Without the detector, or with another seed, other audio: the comparison can fail.
    assert not np.array_equal(wavenet.vocode(mel, seed=(3, 0)), heard)
    assert not np.array_equal(wavenet.vocode(mel, seed=(4, 0), voicing=synth.voice.voicing), heard)

    class Recorder:  # the part of TensorBoard's SummaryWriter the evaluation writes to
        def __init__(self):
            self.audio = {}

        def add_audio(self, tag, audio, step, sample_rate):
            self.audio[tag] = audio[0].numpy()

    task = VocoderTask(VocoderTaskConfig(model=wavenet.config, sample_frames=len(mel)))
    task.from_voice(path)
    writer = Recorder()
    batch = {"mel": torch.from_numpy(mel)[None], "classes": torch.full((1, len(mel) * HOP), 128)}
    task.evaluate(wavenet, [batch], writer, step=7)
    np.testing.assert_array_equal(writer.audio["eval/generated"],
                                  wavenet.vocode(mel, seed=7, voicing=synth.voice.voicing))
