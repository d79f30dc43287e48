"""The parallel acoustic model and its aligner: the alignment maths against brute force, the
model's shapes, padding and durations, training through the trainer, and a voice made of it
speaking through the whole engine."""

import itertools
import math

import numpy as np
import pytest
import torch
from test_trainer import COMMON, corpus, fit  # noqa: F401 (corpus is a fixture)
from voices import TINY_VOCODER, make_tiny_voice

from tts.train.__main__ import main
from tts.train.trainer import export_run
from tts import Synthesizer
from tts.align import (beta_binomial_prior, durations_to_alignment, forward_sum_loss,
                       monotonic_alignment_search)
from tts.parallel_model import ParallelConfig, ParallelModel
from tts.voice import VoiceError, load_model, load_voice, read_config, save_model
from tts.vocoder.wavenet import WaveNet

TINY = ParallelConfig(channels=16, encoder_layers=1, decoder_dilations=(1, 2), duration_layers=1,
                      aligner_channels=8, dropout=0.0)
PARALLEL = ["model.channels=16", "model.encoder_layers=1", "model.decoder_dilations=1,2", "model.duration_layers=1",
            "model.aligner_channels=8", "binarization_start=1"]


def monotonic_paths(T: int, N: int):
    """Every alignment of T frames to N symbols in order, each symbol at least one frame."""
    for cuts in itertools.combinations(range(1, T), N - 1):
        yield np.diff((0, *cuts, T))


def test_the_prior_is_a_distribution_over_symbols_moving_along_the_diagonal():
    prior = beta_binomial_prior(torch.tensor([5, 3]), torch.tensor([12, 7]), 5, 12)
    assert prior.shape == (2, 12, 5)
    np.testing.assert_allclose(prior[0].exp().sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(prior[1, :7, :3].exp().sum(-1), 1.0, atol=1e-5)
    peaks = prior[0].argmax(-1)
    assert peaks[0] == 0 and peaks[-1] == 4 and bool((peaks.diff() >= 0).all())
    assert bool((prior[1, 7:] == 0).all()) and bool((prior[1, :, 3:] == 0).all())  # log 1 outside


def test_forward_sum_is_the_likelihood_of_every_path_through_the_symbols(rng):
    """Brute force: every labelling of the frames with blank (0) or a symbol that reads the
    symbols in order once repeats and blanks are dropped; the loss is -log of their summed
    probability, per symbol."""
    T, N = 5, 2
    log_probs = torch.log_softmax(torch.from_numpy(rng.normal(size=(1, T, N))).float(), -1)
    # What the loss scores each frame with: the blank's -1 beside the symbols, renormalized.
    padded = torch.log_softmax(torch.nn.functional.pad(log_probs, (1, 0), value=-1.0), -1)[0]
    total = 0.0
    for labels in itertools.product(range(N + 1), repeat=T):
        collapsed = [k for i, k in enumerate(labels) if k and (i == 0 or labels[i - 1] != k)]
        if collapsed == list(range(1, N + 1)):
            total += math.exp(sum(float(padded[t, k]) for t, k in enumerate(labels)))
    loss = forward_sum_loss(log_probs, torch.tensor([N]), torch.tensor([T]))
    assert math.isclose(float(loss), -math.log(total) / N, rel_tol=1e-5)
    # Padding symbols and frames changes nothing.
    wider = torch.nn.functional.pad(log_probs, (0, 2, 0, 3), value=0.0)
    assert math.isclose(float(forward_sum_loss(wider, torch.tensor([N]), torch.tensor([T]))), float(loss),
                        rel_tol=1e-5)


def test_alignment_search_finds_the_best_monotonic_path(rng):
    T, N = 7, 3
    log_probs = torch.from_numpy(rng.normal(size=(1, T, N))).float()
    hard = monotonic_alignment_search(log_probs, torch.tensor([N]), torch.tensor([T]))[0]
    assert bool((hard.sum(-1) == 1).all()) and bool((hard.sum(0) >= 1).all())
    best = max(monotonic_paths(T, N), key=lambda d: sum(float(log_probs[0, t, s])
                                                        for t, s in enumerate(np.repeat(np.arange(N), d))))
    np.testing.assert_array_equal(hard.sum(0).numpy(), best)
    with pytest.raises(ValueError, match="fewer mel frames than symbols"):
        monotonic_alignment_search(log_probs[:, :2], torch.tensor([N]), torch.tensor([2]))


def test_durations_to_alignment():
    a = durations_to_alignment(torch.tensor([[2, 1, 3], [1, 1, 0]]))
    assert a.shape == (2, 6, 3)
    np.testing.assert_array_equal(a[0].argmax(-1).numpy(), [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(a[1].sum(-1).numpy(), [1, 1, 0, 0, 0, 0])


def test_training_pass_and_losses():
    torch.manual_seed(0)
    model = ParallelModel(TINY)
    ids = torch.randint(2, TINY.n_symbols, (2, 5))
    mel = torch.rand(2, 20, TINY.n_mels)
    text_lengths, mel_lengths = torch.tensor([5, 3]), torch.tensor([20, 9])
    out = model(ids, text_lengths, mel, mel_lengths)
    assert out["mel"].shape == (2, 20, TINY.n_mels) and out["alignment"].shape == (2, 20, 5)
    np.testing.assert_array_equal(out["durations"].sum(-1).numpy(), [20, 9])  # every frame to one symbol
    assert bool((out["durations"][1, 3:] == 0).all()) and bool((out["mel"][1, 9:] == 0).all())
    losses = model.loss(out, mel, mel_lengths, text_lengths)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    for name in ("embed.weight", "aligner.mel.0.weight", "duration_out.weight", "mel_out.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_generation_follows_the_predicted_durations_and_ignores_padding():
    torch.manual_seed(0)
    model = ParallelModel(TINY).eval()
    with torch.no_grad():
        model.duration_out.weight.zero_()
        model.duration_out.bias.fill_(math.log1p(3.0))  # 3 frames per symbol
    ids = torch.randint(2, TINY.n_symbols, (2, 6))
    out = model.generate(ids, torch.tensor([6, 4]))
    np.testing.assert_array_equal(out.lengths.numpy(), [18, 12])
    alone = model.generate(ids[1:, :4])
    torch.testing.assert_close(out.mel[1, :12], alone.mel[0], atol=1e-5, rtol=1e-5)
    assert bool((out.mel[1, 12:] == 0).all())
    assert model.generate(ids[:1], rate=0.5).lengths.item() == 36  # slower: every symbol 6 frames
    assert model.generate(ids[:1], rate=1.5).lengths.item() == 12  # faster: every symbol 2 frames
    assert model.generate(ids[:1], max_steps=5).lengths.item() == 5
    with pytest.raises(ValueError, match="text_ids is empty"):
        model.generate(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="must be odd"):
        ParallelConfig(kernel=4)


def test_parallel_trains_exports_and_speaks(corpus, tmp_path, capsys):  # noqa: F811
    record = fit("parallel", corpus, tmp_path / "run", [*COMMON, *PARALLEL, "max_steps=3"])
    assert record["step"] == 3 and np.isfinite(record["loss"]) and record["skipped_total"] == 0
    voice = export_run(tmp_path / "run", tmp_path / "voice")
    assert read_config(voice)["models"]["acoustic"]["kind"] == "parallel"
    assert isinstance(load_model(voice, "acoustic"), ParallelModel)
    # A run continues from the voice, and an attention voice is refused in one line.
    assert main(["parallel", "--data", str(corpus), "--out", str(tmp_path / "again"), "--init", str(voice),
                 "--set", *COMMON, "max_steps=1"]) == 0
    assert "step 1" in capsys.readouterr().out
    attention_voice = make_tiny_voice(tmp_path / "attention", kind="attention")
    assert main(["parallel", "--data", str(corpus), "--out", str(tmp_path / "wrong"), "--init",
                 str(attention_voice)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a AttentionConfig model" in err
    save_model(voice, "vocoder", WaveNet(TINY_VOCODER))
    synth = Synthesizer.load(voice, device="cpu", vocoder="numba")
    chunks = list(synth.stream("Yes. No."))
    assert {c.sentence for c in chunks} == {0, 1}
    last = [c for c in chunks if c.last][0]
    assert last.alignment.shape == (len(last.mel), len(last.phonemes) + 1)  # frames x symbols (EOS)
    audio = np.concatenate([c.audio for c in chunks])
    assert audio.dtype == np.float32 and len(audio) == sum(len(c.mel) for c in chunks if c.last) * 200


def test_a_voice_of_an_unknown_acoustic_kind_is_refused(tmp_path):
    voice = tmp_path / "voice"
    save_model(voice, "acoustic", ParallelModel(TINY))
    config = read_config(voice)
    config["models"]["acoustic"]["kind"] = "diffusion"
    (voice / "config.json").write_text(__import__("json").dumps(config))
    with pytest.raises(VoiceError, match="unknown acoustic model kind 'diffusion'"):
        load_voice(voice, require=("acoustic",))
