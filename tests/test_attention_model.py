"""The acoustic model: shapes, losses, incremental == teacher-forced, generation and stopping."""

import dataclasses
import itertools
import json

import pytest
import torch

from tts.attention_model import (
    AttentionConfig,
    AttentionModel,
    DecoderState,
    guided_attention_weights,
    length_mask,
)
from tts.text.symbols import EOS_ID, SYMBOLS

TINY = AttentionConfig(
    n_mels=12, r=3, embed_dim=16, encoder_channels=16, encoder_layers=2, encoder_kernel=3,
    prenet_dim=16, decoder_channels=16, decoder_kernel=3, decoder_dilations=(1, 2),
    converter_dilations=(1, 3), attention_dim=16, postnet_channels=16, postnet_layers=2,
    postnet_kernel=3, max_steps_per_symbol=6,
)


def make_model(seed: int = 0, config: AttentionConfig = TINY) -> AttentionModel:
    torch.manual_seed(seed)
    return AttentionModel(config).eval()


def random_text(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) ids of symbols other than PAD/EOS, EOS last, PAD (0) after each length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, : n - 1] = torch.randint(2, len(SYMBOLS), (n - 1,), generator=g)
        ids[b, n - 1] = EOS_ID
    return ids, torch.tensor(lengths)


def test_config_round_trips_through_json_and_rejects_bad_values():
    assert AttentionConfig().n_symbols == len(SYMBOLS) == 76
    assert AttentionConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    with pytest.raises(ValueError, match="unknown AttentionConfig fields: bogus"):
        AttentionConfig.from_dict({**TINY.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="encoder_kernel"):
        AttentionConfig(encoder_kernel=4)
    with pytest.raises(ValueError, match="attention_dim"):
        AttentionConfig(attention_dim=15)
    with pytest.raises(ValueError, match="prenet_dropout"):
        AttentionConfig(prenet_dropout=1.0)


def test_default_model_is_small():
    n = sum(p.numel() for p in AttentionModel().parameters())
    assert 1_000_000 < n < 3_000_000


def test_forward_shapes_and_finite_losses():
    model = make_model().train()
    ids, text_lengths = random_text([7, 4])
    mel = torch.rand(2, 20, TINY.n_mels)  # 20 frames: not a multiple of r = 3
    mel_lengths = torch.tensor([20, 11])
    out = model(ids, text_lengths, mel, mel_lengths)
    assert out["mel_before"].shape == out["mel_after"].shape == (2, 20, TINY.n_mels)
    assert out["done_logits"].shape == (2, 7)
    assert out["alignment"].shape == (2, 7, 7)
    assert ((out["mel_after"] >= 0) & (out["mel_after"] <= 1)).all()
    # Attention rows are distributions over each utterance's own symbols.
    torch.testing.assert_close(out["alignment"].sum(-1), torch.ones(2, 7))
    assert (out["alignment"][1, :, 4:] == 0).all()
    losses = model.loss(out, mel, mel_lengths, text_lengths)
    assert set(losses) == {"mel_before", "mel_after", "done", "guided_attention", "total"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_loss_ignores_padding_frames():
    model = make_model()
    ids, text_lengths = random_text([5, 5])
    mel = torch.rand(2, 12, TINY.n_mels)
    mel_lengths = torch.tensor([12, 7])
    out = model(ids, text_lengths, mel, mel_lengths)
    changed = mel.clone()
    changed[1, 7:] = 1.0 - changed[1, 7:]
    a, b = model.loss(out, mel, mel_lengths, text_lengths), model.loss(out, changed, mel_lengths, text_lengths)
    for k in ("mel_before", "mel_after"):
        torch.testing.assert_close(a[k], b[k])


def test_guided_attention_weights():
    text_lengths, step_lengths = torch.tensor([6, 3]), torch.tensor([6, 9])
    w = guided_attention_weights(text_lengths, step_lengths, n_steps=9, n_text=6, g=0.2)
    assert w.shape == (2, 9, 6)
    assert ((w >= 0) & (w < 1)).all()
    # Zero on the diagonal n/N == s/S, and outside each utterance.
    assert (torch.diagonal(w[0, :6, :6]) == 0).all()
    assert (w[1, torch.tensor([0, 3, 6]), torch.tensor([0, 1, 2])] == 0).all()
    assert (w[0, 6:] == 0).all() and (w[1, :, 3:] == 0).all()
    # Growing away from the diagonal, symmetrically.
    row = w[0, 0]
    assert (row[1:] > row[:-1]).all()
    torch.testing.assert_close(w[0, 2, 0], w[0, 0, 2])
    assert w[0, 0, 5] == pytest.approx(1 - torch.exp(torch.tensor(-(5 / 6) ** 2 / 0.08)).item())


@pytest.mark.parametrize("config", [TINY, dataclasses.replace(TINY, postnet=False, converter_dilations=())])
def test_incremental_step_equals_teacher_forced_forward(config):
    model = make_model(1, config)
    ids, text_lengths = random_text([9, 5], seed=1)
    T, r = 23, config.r
    mel = torch.rand(2, T, config.n_mels)
    mel_lengths = torch.tensor([23, 14])
    with torch.no_grad():
        out = model(ids, text_lengths, mel, mel_lengths)
        S = out["done_logits"].shape[1]
        true_frames = torch.nn.functional.pad(mel, (0, 0, 0, S * r - T)).reshape(2, S, r, config.n_mels)
        enc = model.encode(ids, text_lengths)
        state = model.init_state(enc)
        frames, dones, attns = [], [], []
        for s in range(S):
            if s > 0:  # teacher forcing: the true frames of the previous step
                state = dataclasses.replace(state, prev_frames=true_frames[:, s - 1])
            f, d, a, state = model.step(enc, state, monotonic=False)
            frames.append(f)
            dones.append(d)
            attns.append(a)
    mel_before = torch.cat(frames, 1)[:, :T]
    torch.testing.assert_close(mel_before, out["mel_before"], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(dones, 1), torch.sigmoid(out["done_logits"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(attns, 1), out["alignment"], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.apply_postnet(mel_before, mel_lengths), out["mel_after"], atol=1e-5, rtol=0)


def test_step_does_not_change_the_given_state():
    model = make_model()
    enc = model.encode(*random_text([6]))
    state = model.init_state(enc)
    before = [b.clone() for b in state.conv_buffers]
    with torch.no_grad():
        _, _, _, after = model.step(enc, state)
    assert isinstance(after, DecoderState) and after.step == 1 and state.step == 0
    assert all(torch.equal(a, b) for a, b in zip(state.conv_buffers, before))


def test_chunked_generation_equals_one_shot():
    model = make_model(2)
    ids, text_lengths = random_text([8, 5], seed=2)
    one_shot = model.generate(ids, text_lengths)
    enc = model.encode(ids, text_lengths)
    first = list(itertools.islice(model.generate_steps(enc), 7))
    state = first[-1][3]
    rest = list(model.generate_steps(enc, state))
    frames = torch.cat([f for f, _, _, _ in first + rest], 1)
    lengths = rest[-1][3].n_steps * TINY.r
    assert torch.equal(lengths, one_shot.lengths)
    mel = model.apply_postnet(frames * length_mask(lengths, frames.shape[1])[..., None], lengths)
    torch.testing.assert_close(mel, one_shot.mel, atol=0, rtol=0)


def test_batched_generation_equals_one_utterance_at_a_time():
    model = make_model(3)
    ids, text_lengths = random_text([9, 4, 6], seed=3)
    batch = model.generate(ids, text_lengths)
    for b in range(3):
        n = int(text_lengths[b])
        alone = model.generate(ids[b : b + 1, :n])
        assert alone.lengths.item() == batch.lengths[b].item()
        t = int(alone.lengths)
        torch.testing.assert_close(batch.mel[b, :t], alone.mel[0], atol=1e-5, rtol=0)
        assert (batch.mel[b, t:] == 0).all()
        torch.testing.assert_close(batch.alignment[b, : t // TINY.r, :n], alone.alignment[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", range(4))
def test_monotonic_attention_never_moves_back_and_generation_ends(seed):
    model = make_model(10 + seed)
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 12, (3,), generator=g).tolist()
    ids, text_lengths = random_text(lengths, seed=seed)
    enc = model.encode(ids, text_lengths)
    state = model.init_state(enc)
    limit = text_lengths * TINY.max_steps_per_symbol
    assert torch.equal(state.limit, limit)
    for _, _, attn, new in model.generate_steps(enc, state):
        if state.step == 0:  # every utterance starts on its first symbol
            assert (attn[:, 1:] == 0).all() and (new.last_attended == 0).all()
        moved = new.last_attended - state.last_attended
        active = ~state.finished
        assert ((moved[active] >= 0) & (moved[active] < TINY.attention_window)).all()
        # Attention is zero outside the window [last, last + window).
        pos = torch.arange(ids.shape[1])[None, :]
        outside = (pos < state.last_attended[:, None]) | (pos >= state.last_attended[:, None] + TINY.attention_window)
        assert (attn[outside] == 0).all()
        state = new
    assert state.finished.all() and (state.n_steps <= limit).all() and state.step <= int(limit.max())


def positional_only(model: AttentionModel, done_bias: float) -> AttentionModel:
    """Attention scores from the positional encodings alone (a clean diagonal), and a done
    output that always (done_bias > 0) or never fires."""
    with torch.no_grad():
        for layer in (model.attn_query, model.attn_key):
            layer.weight.zero_()
            layer.bias.zero_()
        model.done_out.weight.zero_()
        model.done_out.bias.fill_(done_bias)
    return model


def test_generation_stops_when_done_fires_at_the_last_symbol():
    model = positional_only(make_model(4), done_bias=30.0)
    ids, text_lengths = random_text([10, 6], seed=4)
    out = model.generate(ids, text_lengths)
    steps = out.lengths // TINY.r
    assert (steps < text_lengths * TINY.max_steps_per_symbol).all()
    for b in range(2):
        last = out.alignment[b, : steps[b]].argmax(-1)
        # It stops at the first step that attends the final (EOS) symbol, not before.
        assert last[-1] == text_lengths[b] - 1 and (last[:-1] < text_lengths[b] - 1).all()
        assert (last[1:] >= last[:-1]).all()
    # Done alone is not enough: it has fired from the first step, while attention was elsewhere.
    assert (steps > 1).all()


def test_generation_is_bounded_by_the_step_limit():
    model = positional_only(make_model(5), done_bias=-30.0)
    ids, text_lengths = random_text([5, 3], seed=5)
    out = model.generate(ids, text_lengths)
    assert torch.equal(out.lengths, text_lengths * TINY.max_steps_per_symbol * TINY.r)
    out = model.generate(ids, text_lengths, max_steps=4)
    assert torch.equal(out.lengths, torch.tensor([4, 4]) * TINY.r)
    assert out.mel.shape == (2, 4 * TINY.r, TINY.n_mels)


def test_forced_progress_moves_a_stalling_decoder_through_every_symbol():
    # A query position that never advances: every step prefers the window's first symbol.
    stalling = dataclasses.replace(TINY, query_position_rate=1e-6)
    ids, text_lengths = random_text([7, 4], seed=6)
    model = positional_only(make_model(6, stalling), done_bias=-30.0)
    out = model.generate(ids, text_lengths)
    assert torch.equal(out.lengths, text_lengths * TINY.max_steps_per_symbol * TINY.r)  # stalled to the limit
    assert (out.alignment[0].argmax(-1) == 0).all()

    k = 3
    model = positional_only(make_model(6, dataclasses.replace(stalling, max_steps_on_symbol=k)), done_bias=-30.0)
    out = model.generate(ids, text_lengths)
    for b in range(2):
        steps = int(out.lengths[b]) // TINY.r
        last = out.alignment[b, :steps].argmax(-1).tolist()
        assert last == sorted(last) and last[-1] == text_lengths[b] - 1
        runs = [len(list(run)) for _, run in itertools.groupby(last)]
        # At most k steps on a symbol; k on EOS end the utterance.
        assert max(runs) <= k and runs[-1] == k
        assert steps < text_lengths[b] * TINY.max_steps_per_symbol


def test_windowed_postnet_equals_whole_mel():
    model = make_model(6)
    mel = torch.rand(2, 40, TINY.n_mels)
    lengths = torch.tensor([40, 31])
    with torch.no_grad():
        whole = model.apply_postnet(mel, lengths)
        k = model.postnet_lookahead
        assert k == TINY.postnet_layers * (TINY.postnet_kernel // 2)
        for start, end in [(0, 10), (10, 25), (25, 40)]:
            a, b = max(0, start - k), min(40, end + k)
            window = model.apply_postnet(mel[:, a:b], (lengths - a).clamp(0, b - a))
            torch.testing.assert_close(window[:, start - a : end - a], whole[:, start:end], atol=1e-6, rtol=0)


def test_bad_inputs_raise_value_errors():
    model = make_model()
    with pytest.raises(ValueError, match="text_ids must be in"):
        model.encode(torch.tensor([[3, 200]]))
    with pytest.raises(ValueError, match="text_lengths"):
        model.encode(torch.tensor([[3, 4]]), torch.tensor([3]))
    with pytest.raises(ValueError, match="empty"):
        model.generate(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="mel must be"):
        model(torch.tensor([[3, 1]]), torch.tensor([2]), torch.rand(1, 5, 7), torch.tensor([5]))
    with pytest.raises(ValueError, match="mel_lengths"):
        model(torch.tensor([[3, 1]]), torch.tensor([2]), torch.rand(1, 5, TINY.n_mels), torch.tensor([6]))
    with pytest.raises(ValueError, match="max_steps"):
        model.generate(torch.tensor([[3, 1]]), max_steps=0)


def test_a_few_optimizer_steps_reduce_the_loss():
    """Synthetic corpus: every symbol has a fixed spectrum held for two decoder steps."""
    torch.manual_seed(7)
    model = AttentionModel(TINY)
    spectra = torch.rand(len(SYMBOLS), TINY.n_mels)
    ids, text_lengths = random_text([6, 8, 5, 7, 8, 4], seed=7)
    hold = 2 * TINY.r
    mel_lengths = text_lengths * hold
    mel = torch.zeros(len(ids), int(mel_lengths.max()), TINY.n_mels)
    for b, n in enumerate(text_lengths.tolist()):
        mel[b, : n * hold] = spectra[ids[b, :n]].repeat_interleave(hold, dim=0)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return model.loss(model(ids, text_lengths, mel, mel_lengths), mel, mel_lengths, text_lengths)["total"].item()

    before = eval_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        losses = model.loss(model(ids, text_lengths, mel, mel_lengths), mel, mel_lengths, text_lengths)
        losses["total"].backward()
        opt.step()
    assert eval_loss() < 0.8 * before
