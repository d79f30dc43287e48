"""The public Synthesizer API on a tiny random-weight voice."""

import threading
import tracemalloc

import numpy as np
import pytest

from tests.voices import TINY_SAMPLES_PER_SYMBOL, make_tiny_voice
from tts import SynthesisError, Synthesizer
from tts.audio import to_pcm16
from tts.text import NothingToSpeakError, to_phonemes

TEXT = "Hello, world. This is a test of streaming. The third sentence ends here."


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return Synthesizer.load(make_tiny_voice(tmp_path_factory.mktemp("voice") / "tiny"), device="cpu")


def test_load_and_backend(synth):
    assert synth.sample_rate == 16000 and synth.backend == "numba"


def test_stream_equals_synthesize(synth):
    chunks = list(synth.stream(TEXT, seed=3))
    audio = synth.synthesize(TEXT, seed=3)
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks]), audio)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # Sentence by sentence, several chunks within a sentence, chunk metadata filled in.
    assert [c.sentence for c in chunks if c.last] == [0, 1, 2]
    assert len(chunks) > 3
    first = chunks[0]
    assert first.text == "hello, world." and first.phonemes == to_phonemes("Hello, world.")
    assert first.mel.shape[1] == 80 and first.alignment.shape[1] == len(first.phonemes) + 1
    assert len(first.audio) < sum(len(c.audio) for c in chunks if c.sentence == 0)
    n = sum(len(c.audio) for c in chunks if c.sentence == 0)
    assert n == (len(first.phonemes) + 1) * TINY_SAMPLES_PER_SYMBOL


def test_seed_and_rate(synth):
    a, b = synth.synthesize("Hi there.", seed=1), synth.synthesize("Hi there.", seed=2)
    assert len(a) == len(b) and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, synth.synthesize("Hi there.", seed=1))
    slow = synth.synthesize("Hi there.", rate=0.5)
    assert abs(len(slow) - 2 * len(a)) <= 400
    with pytest.raises(ValueError, match="rate"):
        synth.synthesize("Hi there.", rate=3)
    with pytest.raises(NothingToSpeakError):
        synth.synthesize("?!  ...")


def test_synthesize_to_file(synth, tmp_path):
    import soundfile as sf
    path = synth.synthesize_to_file("Hi there.", tmp_path / "hi.wav", seed=1)
    audio, sr = sf.read(path, dtype="int16")
    assert sr == 16000
    np.testing.assert_array_equal(audio, to_pcm16(synth.synthesize("Hi there.", seed=1)))


def test_concurrent_calls_do_not_mix(synth):
    texts = ["One two three.", "Four five six seven.", "Eight.", "Nine ten, eleven twelve."]
    serial = [synth.synthesize(t, seed=i) for i, t in enumerate(texts)]
    results = [None] * len(texts)

    def work(i):
        results[i] = synth.synthesize(texts[i], seed=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, results):
        np.testing.assert_array_equal(a, b)


def test_long_text_streams_in_bounded_memory(synth):
    sentence = "The quick brown fox jumps over the lazy dog. "

    def peak(n_sentences):
        tracemalloc.start()
        samples = 0
        for chunk in synth.stream(sentence * n_sentences):
            samples += len(chunk.audio)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, samples

    small, n_small = peak(5)
    large, n_large = peak(60)
    assert n_large == 12 * n_small  # all of it was spoken
    assert large < 1.5 * small + 2_000_000  # memory does not grow with the text


def test_load_errors(tmp_path):
    with pytest.raises(SynthesisError, match="not found"):
        Synthesizer.load(tmp_path / "nowhere")
    with pytest.raises(SynthesisError, match="unknown device"):
        Synthesizer.load(make_tiny_voice(tmp_path / "v"), device="tpu")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(SynthesisError, match="no CUDA GPU"):
            Synthesizer.load(tmp_path / "v", device="cuda")


def test_bfloat16_vocoder_weights(tmp_path):
    voice = make_tiny_voice(tmp_path / "v")
    fp32 = Synthesizer.load(voice, device="cpu").synthesize("Hi there.", seed=1)
    bf16 = Synthesizer.load(voice, device="cpu", weights="bf16").synthesize("Hi there.", seed=1)
    assert len(bf16) == len(fp32) and not np.array_equal(bf16, fp32)
    with pytest.raises(SynthesisError, match="only numba"):
        Synthesizer.load(voice, device="cpu", vocoder="torch", weights="bf16")
    with pytest.raises(SynthesisError, match="unknown weight format"):
        Synthesizer.load(voice, device="cpu", weights="fp8")
