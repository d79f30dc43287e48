"""The public Synthesizer API on a tiny random-weight voice."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import torch
import pytest

from tests.voices import TINY_SAMPLES_PER_SYMBOL, make_tiny_voice
from tts import SynthesisError, Synthesizer
from tts.audio import to_pcm16
from tts.text import NothingToSpeakError, to_phonemes

TEXT = "Hello, world. This is a test of streaming. The third sentence ends here."
REPO = Path(__file__).resolve().parents[1]


class CountingKernel:
    """The synthesizer's vocoder kernel, counting its calls; ``before_call(n)`` runs before
    the n-th (1-based) call on the calling thread."""

    def __init__(self, kernel, before_call=None):
        self.kernel, self.before_call = kernel, before_call
        self.calls = 0
        self._per_thread = threading.local()

    def __getattr__(self, name):
        return getattr(self.kernel, name)

    def generate(self, *args, **kwargs):
        self.calls += 1
        self._per_thread.calls = getattr(self._per_thread, "calls", 0) + 1
        if self.before_call is not None:
            self.before_call(self._per_thread.calls)
        return self.kernel.generate(*args, **kwargs)




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


def test_each_chunk_is_handed_out_as_soon_as_it_is_generated(synth, monkeypatch):
    kernel = CountingKernel(synth.vocoder.kernel)
    monkeypatch.setattr(synth.vocoder, "kernel", kernel)
    chunks = synth.stream(TEXT, seed=3)
    first = next(chunks)
    # The vocoder has run once: nothing past the first chunk of the sentence exists yet.
    assert kernel.calls == 1 and not first.last
    assert len(first.audio) == synth.sample_rate // 10  # the documented 100 ms
    sentence = (len(first.phonemes) + 1) * TINY_SAMPLES_PER_SYMBOL
    assert sentence > 3 * len(first.audio)
    for n, chunk in enumerate(chunks, start=2):  # no read-ahead either
        assert kernel.calls == n, f"chunk {n} came after {kernel.calls} vocoder calls"


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
    for seed in (-1, 2 ** 63, 1.5, "3", True):
        with pytest.raises(ValueError, match=r"seed must be an integer from 0 to 9223372036854775807"):
            next(synth.stream("Hi there.", seed=seed))
    synth.synthesize("Hi.", seed=np.int64(2 ** 63 - 1))  # the largest seed, as numpy gives it


def test_synthesize_to_file(synth, tmp_path):
    import soundfile as sf
    path = synth.synthesize_to_file("Hi there.", tmp_path / "hi.wav", seed=1)
    audio, sr = sf.read(path, dtype="int16")
    assert sr == 16000
    np.testing.assert_array_equal(audio, to_pcm16(synth.synthesize("Hi there.", seed=1)))


def test_concurrent_calls_do_not_mix(synth, monkeypatch):
    texts = ["One two three.", "Four five six seven.", "Eight.", "Nine ten, eleven twelve."]
    serial = [synth.synthesize(t, seed=i) for i, t in enumerate(texts)]
    # Every call waits, before its first vocoder chunk, until all the others have started:
    # the calls overlap for sure, each in the middle of its first sentence.
    meeting = threading.Barrier(len(texts), timeout=60)
    met = []

    def meet(call: int):
        if call == 1:
            meeting.wait()
            met.append(True)

    monkeypatch.setattr(synth.vocoder, "kernel", CountingKernel(synth.vocoder.kernel, before_call=meet))
    results = [None] * len(texts)

    def work(i):
        results[i] = synth.synthesize(texts[i], seed=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(met) == len(texts), "the calls did not all run at the same time"
    for text, a, b in zip(texts, serial, results):
        assert b is not None, f"the call for {text!r} failed"
        np.testing.assert_array_equal(a, b, err_msg=f"wrong audio for {text!r}")


MEMORY_RUN = """
import sys
from tts import Synthesizer

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

synth = Synthesizer.load(sys.argv[1], device="cpu")
sentence, n, warm = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base = None
for chunk in synth.stream(sentence * n):
    if chunk.last and chunk.sentence == warm - 1:
        base = kib("VmRSS")
    last = chunk
print(base, kib("VmHWM"), last.sentence + 1)
"""


def test_long_text_streams_in_bounded_memory(voice, synth, tmp_path):
    # What the process really holds (torch and numpy buffers included), in a process of its
    # own: the peak resident size over a long text may not grow past the size after a few
    # sentences by as much as keeping one sentence's audio per sentence would add.
    sentence, n, warm = "The quick brown fox jumps over the lazy dog. ", 40, 8
    script = tmp_path / "memory_run.py"
    script.write_text(MEMORY_RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, str(script), str(voice), sentence, str(n), str(warm)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    base_kib, peak_kib, spoken = map(int, r.stdout.split())
    assert spoken == n  # all of it was spoken
    sentence_bytes = 4 * len(synth.synthesize(sentence))  # float32
    leak_of_one_sentence_each = (n - warm) * sentence_bytes
    assert (peak_kib - base_kib) * 1024 < leak_of_one_sentence_each / 2, (
        f"peak RSS grew {peak_kib - base_kib} KiB after sentence {warm}, a sentence is "
        f"{sentence_bytes // 1024} KiB")


def test_load_errors(tmp_path):
    with pytest.raises(SynthesisError, match="not found"):
        Synthesizer.load(tmp_path / "nowhere")
    with pytest.raises(SynthesisError, match="unknown device"):
        Synthesizer.load(make_tiny_voice(tmp_path / "v"), device="tpu")
    with pytest.raises(SynthesisError, match="unknown vocoder 'bogus'; choose from auto, wavenet, griffin-lim"):
        Synthesizer.load(tmp_path / "v", vocoder="bogus")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(SynthesisError, match="no CUDA GPU"):
            Synthesizer.load(tmp_path / "v", device="cuda")


def test_vocoder_and_backend_are_two_choices_and_the_older_spelling_still_works(tmp_path):
    import json

    voice = make_tiny_voice(tmp_path / "v")
    synth = Synthesizer.load(voice, vocoder="wavenet", backend="torch")
    assert (synth.vocoder.name, synth.vocoder.backend, synth.backend) == ("wavenet", "torch", "torch")
    older = Synthesizer.load(voice, vocoder="numba")
    assert (older.vocoder.name, older.vocoder.backend, older.vocoder.label) == ("wavenet", "numba", "wavenet (numba)")
    with pytest.raises(SynthesisError, match="backend 'numba' runs the WaveNet, not griffin-lim"):
        Synthesizer.load(voice, vocoder="griffin-lim", backend="numba")
    with pytest.raises(SynthesisError, match="give --vocoder wavenet --backend torch"):
        Synthesizer.load(voice, vocoder="numba", backend="torch")
    with pytest.raises(SynthesisError, match="unknown vocoder backend 'tpu'"):
        Synthesizer.load(voice, backend="tpu")
    assert json.loads((voice / "config.json").read_text())["models"]["vocoder"]["kind"] == "wavenet"


def test_griffin_lim_speaks_a_voice_without_a_wavenet_and_never_loads_one(tmp_path):
    import json

    voice = make_tiny_voice(tmp_path / "v")
    config = json.loads((voice / "config.json").read_text())
    del config["models"]["vocoder"]
    (voice / "config.json").write_text(json.dumps(config))
    (voice / "vocoder.safetensors").unlink()
    synth = Synthesizer.load(voice, vocoder="griffin-lim")
    assert "vocoder" not in synth.voice.models and len(synth.synthesize("Hi.")) > 0
    with pytest.raises(SynthesisError, match="has no vocoder model"):
        Synthesizer.load(voice, vocoder="wavenet")


def test_bfloat16_vocoder_weights(tmp_path):
    voice = make_tiny_voice(tmp_path / "v")
    fp32 = Synthesizer.load(voice, device="cpu").synthesize("Hi there.", seed=1)
    bf16 = Synthesizer.load(voice, device="cpu", weights="bf16").synthesize("Hi there.", seed=1)
    assert len(bf16) == len(fp32) and not np.array_equal(bf16, fp32)
    with pytest.raises(SynthesisError, match="only numba"):
        Synthesizer.load(voice, device="cpu", vocoder="torch", weights="bf16")
    with pytest.raises(SynthesisError, match="unknown weight format"):
        Synthesizer.load(voice, device="cpu", weights="fp8")


def test_a_voice_names_the_precision_its_wavenet_runs_in(tmp_path):
    """weights="auto" (the default) runs the voice's `wavenet_weights` where the kernel takes
    them (numba), float32 elsewhere (the torch reference); a precision asked for wins; a run
    exported over the voice keeps the setting; an unknown one is one clear error."""
    from tts.train.trainer import _carried_over
    from tts.voice import VoiceError, set_wavenet_weights

    voice = make_tiny_voice(tmp_path / "v")
    fp32 = Synthesizer.load(voice, device="cpu").synthesize("Hi there.", seed=1)
    set_wavenet_weights(voice, "bf16")
    auto = Synthesizer.load(voice, device="cpu", backend="numba")
    assert auto.vocoder.choice.weights == "bf16"
    np.testing.assert_array_equal(auto.synthesize("Hi there.", seed=1),
                                  Synthesizer.load(voice, device="cpu", weights="bf16").synthesize("Hi there.", seed=1))
    asked = Synthesizer.load(voice, device="cpu", weights="fp32")
    np.testing.assert_array_equal(asked.synthesize("Hi there.", seed=1), fp32)
    assert Synthesizer.load(voice, device="cpu", backend="torch").vocoder.choice.weights == "fp32"
    assert _carried_over(voice, "vocoder")[2] == {"wavenet_weights": "bf16"}
    with pytest.raises(VoiceError, match="unknown wavenet_weights 'fp8'"):
        set_wavenet_weights(voice, "fp8")
    config = json.loads((voice / "config.json").read_text())
    (voice / "config.json").write_text(json.dumps({**config, "wavenet_weights": "int4"}))
    with pytest.raises(SynthesisError, match="unknown wavenet_weights 'int4'"):
        Synthesizer.load(voice, device="cpu")


def test_threads_default_to_one_unless_asked(voice, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(2)
        Synthesizer.load(voice, device="cpu")
        assert torch.get_num_threads() == 1
        Synthesizer.load(voice, device="cpu", threads=2)
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        torch.set_num_threads(1)
        Synthesizer.load(voice, device="cpu")
        assert torch.get_num_threads() == 2
        with pytest.raises(SynthesisError, match="threads must be a positive integer, got 0"):
            Synthesizer.load(voice, device="cpu", threads=0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("kind", ["parallel", "attention"])
def test_the_speaking_rate_scales_every_symbol_and_the_alignment_is_per_frame(tmp_path, kind):
    """The parallel model divides every duration by the rate, pauses too; the attention
    model, without durations, resamples its mel. Either way the alignment is frames x
    symbols."""
    from tts.text import to_phonemes

    synth = Synthesizer.load(make_tiny_voice(tmp_path / "v", kind=kind), vocoder="griffin-lim")
    assert synth.acoustic.kind == kind
    phonemes = to_phonemes("Hi, there.")
    symbols = len(phonemes) + 1  # EOS
    for rate, per_symbol in ((1.0, 4), (2.0, 2), (0.5, 8)):
        mel, alignment = synth.sentence_mel(phonemes, rate)
        assert mel.shape[0] == per_symbol * symbols and alignment.shape == (mel.shape[0], symbols)
        if kind == "parallel":
            assert (alignment.sum(axis=0) == per_symbol).all()  # the comma's pause too


def test_the_mel_of_a_text_is_read_and_pronounced_as_the_stream_reads_it(tmp_path):
    """`Synthesizer.mel` (the evaluation's acoustic-model mel) walks the same plan, lexicon and
    G2P as `stream`: its mel is the stream's sentence mels end to end, and a user lexicon
    changes it."""
    voice = make_tiny_voice(tmp_path / "v")
    text = "Zork spoke. Twice!"
    plain = Synthesizer.load(voice, device="cpu", vocoder="griffin-lim")
    streamed = np.concatenate([c.mel for c in plain.stream(text) if c.last])
    np.testing.assert_array_equal(plain.mel(text), streamed)
    lexicon = tmp_path / "lexicon.dict"
    lexicon.write_text("ZORK  Z AO1 R K S T R AH0 M\n", encoding="utf-8")
    personal = Synthesizer.load(voice, device="cpu", vocoder="griffin-lim", lexicon=lexicon)
    assert len(personal.mel(text)) > len(plain.mel(text))  # five more phonemes, each a fixed length
    with pytest.raises(ValueError, match="speaking rate must be from 0.5 to 2"):
        plain.mel(text, rate=3.0)


def test_the_speech_never_clips_whatever_the_seed_and_rate(tmp_path):
    """The vocoder runtime bends what passes 0.9 of full scale (tts.audio.soft_limit): a
    random-weight WaveNet, which draws loud classes often, never reaches full scale in 16 bits,
    and what stays below the knee is the vocoder's own."""
    voice = make_tiny_voice(tmp_path / "v")
    synth = Synthesizer.load(voice, device="cpu", vocoder="wavenet", backend="numba")
    loud = 0
    for seed in range(6):
        for rate in (0.5, 1.0, 1.2, 2.0):
            audio = synth.synthesize("Piped text.", seed=seed, rate=rate)
            assert np.abs(audio).max() < 1.0 and np.abs(to_pcm16(audio)).max() < 32767
            loud += int((np.abs(audio) > 0.9).sum())
    assert loud > 0  # the limiter had work to do
    mel = torch.rand(12, 80)
    raw = np.concatenate([a for a, _ in synth.vocoder.chunks(mel, np.random.default_rng(1))])
    limited = np.concatenate([a for a, _ in synth.vocoder.stream(mel, np.random.default_rng(1))])
    below = np.abs(raw) <= 0.9
    np.testing.assert_array_equal(limited[below], raw[below])


def test_a_voice_with_lpcnet_inputs_speaks_the_same_on_every_kernel(tmp_path):
    """The runtime hands each chunk's per-sample coefficients to the kernel, whose predictor
    runs in the loop: numba and the torch reference draw the same samples, and `vocode` (the
    training evaluation's path) hears the same audio."""
    import dataclasses

    from tests.voices import TINY_VOCODER
    from tts.text import phonemize_words
    from tts.voice import save_model
    from tts.vocoder.wavenet import WaveNet

    voice = make_tiny_voice(tmp_path / "v")
    with torch.random.fork_rng():
        torch.manual_seed(4)
        wavenet = WaveNet(dataclasses.replace(TINY_VOCODER, lpc_order=6, lpc_inputs=True)).eval()
        with torch.no_grad():
            wavenet.embedding_signal.weight.normal_(0.0, 1.0)
            wavenet.embedding_prediction.weight.normal_(0.0, 1.0)
    save_model(voice, "vocoder", wavenet)
    numba = Synthesizer.load(voice, device="cpu", backend="numba")
    reference = Synthesizer.load(voice, device="cpu", backend="torch")
    text = "Hi there."
    heard = numba.synthesize(text, seed=2)
    np.testing.assert_array_equal(heard, reference.synthesize(text, seed=2))
    mel, _ = numba.sentence_mel(phonemize_words(text, numba.g2p)[0])
    np.testing.assert_array_equal(numba.voice.wavenet.vocode(mel, seed=(2, 0)), heard)
    assert np.abs(heard).max() < 1.0
