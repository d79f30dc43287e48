"""The attention acoustic model: symbol ids in, mel spectrogram out (Deep Voice 3 / DCTTS family).

Layout: every public tensor is (B, T, C): text ids (B, N), encoder keys/values (B, N, A),
mel (B, T, n_mels), alignment (B, S, N) with S = T / r decoder steps. Only the inside of the
conv blocks runs in (B, C, T), because that is what conv1d wants.

    encoder:   ids -> embedding -> residual GLU convs (non-causal) -> keys; values = (keys + emb) * sqrt(.5)
    decoder:   step s sees the r frames of step s-1 (zeros at s = 0)
               -> prenet (2 x FC + ReLU + dropout) -> causal GLU convs -> query
               -> attention: q = Wq query + pe(s * query_rate), k = Wk keys + pe(n * key_rate),
                  softmax(q k / sqrt(A)) over the text, padding masked -> context
               -> (query + context) * sqrt(.5) -> causal GLU convs -> r frames (sigmoid) + done logit
    postnet:   optional non-causal GLU convs over the whole mel, a residual in logit space

Mels are normalized to [0, 1], so frames leave through a sigmoid, and the postnet adds its
residual to the logit of its input, which keeps its output in [0, 1] too.

Two ways to run it, on the same weights:
- `forward` / `loss`: teacher-forced and parallel over all steps (the convs are causal).
- `encode`, `init_state`, `step`: one decoder step at a time, with every buffer in a
  `DecoderState`; `generate_steps` loops `step` (for streaming) and `generate` also applies
  the postnet. Fed the true previous frames without the monotonic window, `step` computes
  exactly what `forward` computes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from tts.acoustic import AcousticModel, Speech
from tts.config import JsonConfig
from tts.layers import SQRT_HALF, ConvGLU, checked_text, length_mask
from tts.text.symbols import PAD_ID, SYMBOLS

DONE_THRESHOLD = 0.5
# The postnet works on logit(mel); clamping to [eps, 1 - eps] keeps exact 0/1 frames finite.
LOGIT_EPS = 1e-4


@dataclass(frozen=True)
class AttentionConfig(JsonConfig):
    """Model dimensions; stored as JSON next to the weights, enough to rebuild the model."""

    n_symbols: int = len(SYMBOLS)
    n_mels: int = 80
    r: int = 4  # mel frames per decoder step (4 x 12.5 ms = 50 ms)
    embed_dim: int = 128
    encoder_channels: int = 128
    encoder_layers: int = 4
    encoder_kernel: int = 5
    prenet_dim: int = 128
    # Heavy prenet dropout makes the decoder lean on the text rather than on copying its
    # previous frames, which is what lets attention learn (Tacotron, DV3).
    prenet_dropout: float = 0.5
    decoder_channels: int = 128
    decoder_kernel: int = 3
    decoder_dilations: tuple[int, ...] = (1, 2, 4, 8)  # one causal layer each, before attention
    converter_dilations: tuple[int, ...] = (1, 2)  # one causal layer each, after attention
    attention_dim: int = 128
    attention_window: int = 3  # monotonic inference attends [last, last + window)
    # Positional encodings: their dot product peaks where s * query_rate == n * key_rate, so a
    # key rate equal to the corpus-average decoder steps per symbol puts the prior on the
    # diagonal. Read speech at ~13 symbols/s gives ~77 ms per symbol, ~1.5 steps of 50 ms;
    # set it from the training corpus when known.
    query_position_rate: float = 1.0
    key_position_rate: float = 1.4
    postnet: bool = True
    postnet_channels: int = 128
    postnet_layers: int = 3
    postnet_kernel: int = 5
    dropout: float = 0.05  # on the input of every conv block
    max_steps_per_symbol: int = 10  # hard stop: 10 steps x 50 ms = 0.5 s per symbol
    # Forced progress at inference: after this many steps in a row on one symbol the window
    # moves past it (and on the last symbol, the utterance ends), so a decoder that would
    # repeat a sound never stalls; 0: off. Read speech rarely holds a symbol for 300 ms.
    max_steps_on_symbol: int = 0
    guided_attention_g: float = 0.2

    def __post_init__(self):
        # JSON has no tuples; accept lists so that from_dict(to_dict()) round-trips.
        for name in ("decoder_dilations", "converter_dilations"):
            object.__setattr__(self, name, tuple(int(d) for d in getattr(self, name)))
        for name in ("n_symbols", "n_mels", "r", "embed_dim", "encoder_channels", "encoder_kernel",
                     "prenet_dim", "decoder_channels", "decoder_kernel", "attention_dim",
                     "attention_window", "postnet_channels", "postnet_kernel", "max_steps_per_symbol"):
            if getattr(self, name) < 1:
                raise ValueError(f"AttentionConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("encoder_layers", "postnet_layers", "max_steps_on_symbol"):
            if getattr(self, name) < 0:
                raise ValueError(f"AttentionConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("encoder_kernel", "postnet_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"AttentionConfig.{name} must be odd (centred non-causal conv), "
                                 f"got {getattr(self, name)}")
        for name in ("decoder_dilations", "converter_dilations"):
            if any(d < 1 for d in getattr(self, name)):
                raise ValueError(f"AttentionConfig.{name} must be positive, got {getattr(self, name)}")
        if self.attention_dim % 2:
            raise ValueError(f"AttentionConfig.attention_dim must be even (sin/cos pairs), "
                             f"got {self.attention_dim}")
        for name in ("dropout", "prenet_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"AttentionConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("query_position_rate", "key_position_rate", "guided_attention_g"):
            if getattr(self, name) <= 0:
                raise ValueError(f"AttentionConfig.{name} must be > 0, got {getattr(self, name)}")



class EncoderOutput(NamedTuple):
    """The text side of attention, computed once per utterance by `encode`."""

    keys: torch.Tensor  # (B, N, A) projected keys plus their positional encoding
    values: torch.Tensor  # (B, N, A) projected values
    lengths: torch.Tensor  # (B,) int64 symbols per utterance


@dataclass(frozen=True)
class DecoderState:
    """Everything one decoder step carries to the next. `step` returns a new state and never
    changes the one it is given, so a state can be kept and resumed from."""

    step: int  # decoder steps taken so far (the same for the whole batch)
    prev_frames: torch.Tensor  # (B, r, n_mels) the input of the next step; zeros before the first
    conv_buffers: tuple[torch.Tensor, ...]  # per causal layer (B, (kernel-1)*dilation, C): its last inputs
    last_attended: torch.Tensor  # (B,) int64 text position attended at the previous step
    stay: torch.Tensor  # (B,) int64 steps in a row that attended last_attended
    n_steps: torch.Tensor  # (B,) int64 steps that belong to each utterance so far
    limit: torch.Tensor  # (B,) int64 hard step limit per utterance
    finished: torch.Tensor  # (B,) bool


class Generation(NamedTuple):
    """What `AttentionModel.generate` makes: the mel, and the attention per decoder step."""

    mel: torch.Tensor  # (B, T, n_mels) after the postnet, zero past each utterance's length
    lengths: torch.Tensor  # (B,) int64 frames per utterance (steps * r)
    alignment: torch.Tensor  # (B, S, N) attention per step, zero past each utterance's steps


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Positional encoding, (...,) float positions -> (..., dim). The dot product of two
    encodings is sum_i cos((a - b) f_i): largest where the positions agree."""
    freqs = 10000.0 ** (-torch.arange(0, dim, 2, device=positions.device, dtype=positions.dtype) / dim)
    angles = positions[..., None] * freqs  # (..., dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def guided_attention_weights(text_lengths: torch.Tensor, step_lengths: torch.Tensor,
                             n_steps: int, n_text: int, g: float = 0.2) -> torch.Tensor:
    """DCTTS guided-attention penalty, (B, n_steps, n_text):
    W[s, n] = 1 - exp(-(n/N - s/S)^2 / (2 g^2)), zero outside each utterance's (S, N)."""
    n = torch.arange(n_text, device=text_lengths.device)[None, None, :] / text_lengths[:, None, None]
    s = torch.arange(n_steps, device=text_lengths.device)[None, :, None] / step_lengths[:, None, None]
    w = 1.0 - torch.exp(-((n - s) ** 2) / (2.0 * g * g))  # (B, S, N)
    valid = length_mask(step_lengths, n_steps)[:, :, None] & length_mask(text_lengths, n_text)[:, None, :]
    return w * valid


class TextEncoder(nn.Module):
    def __init__(self, c: AttentionConfig):
        super().__init__()
        self.embed = nn.Embedding(c.n_symbols, c.embed_dim, padding_idx=PAD_ID)
        self.proj_in = nn.Linear(c.embed_dim, c.encoder_channels)
        self.convs = nn.ModuleList(ConvGLU(c.encoder_channels, c.encoder_kernel, 1, False, c.dropout)
                                   for _ in range(c.encoder_layers))
        self.proj_out = nn.Linear(c.encoder_channels, c.embed_dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, N), mask (B, N, 1) float -> keys, values (B, N, E). Padding is zeroed after
        every layer, so an utterance encodes the same alone or in a padded batch."""
        emb = self.embed(ids)  # (B, N, E)
        x = self.proj_in(emb) * mask  # (B, N, C)
        for conv in self.convs:
            x = conv(x) * mask
        keys = self.proj_out(x) * mask  # (B, N, E)
        return keys, (keys + emb) * SQRT_HALF


class AttentionModel(AcousticModel):
    """Deep Voice 3's attention model: a decoder that reads its own frames, r per step."""

    kind = "attention"
    config_class = AttentionConfig

    def __init__(self, config: AttentionConfig = AttentionConfig()):
        super().__init__()
        self.config = c = config
        self.encoder = TextEncoder(c)
        self.prenet = nn.Sequential(
            nn.Linear(c.r * c.n_mels, c.prenet_dim), nn.ReLU(), nn.Dropout(c.prenet_dropout),
            nn.Linear(c.prenet_dim, c.decoder_channels), nn.ReLU(), nn.Dropout(c.prenet_dropout))
        self.query_convs = nn.ModuleList(ConvGLU(c.decoder_channels, c.decoder_kernel, d, True, c.dropout)
                                         for d in c.decoder_dilations)
        self.attn_query = nn.Linear(c.decoder_channels, c.attention_dim)
        self.attn_key = nn.Linear(c.embed_dim, c.attention_dim)
        self.attn_value = nn.Linear(c.embed_dim, c.attention_dim)
        self.attn_out = nn.Linear(c.attention_dim, c.decoder_channels)
        self.converter_convs = nn.ModuleList(ConvGLU(c.decoder_channels, c.decoder_kernel, d, True, c.dropout)
                                             for d in c.converter_dilations)
        self.mel_out = nn.Linear(c.decoder_channels, c.r * c.n_mels)
        self.done_out = nn.Linear(c.decoder_channels, 1)
        if c.postnet:
            self.postnet_in = nn.Linear(c.n_mels, c.postnet_channels)
            self.postnet_convs = nn.ModuleList(
                ConvGLU(c.postnet_channels, c.postnet_kernel, 1, False, c.dropout) for _ in range(c.postnet_layers))
            self.postnet_out = nn.Linear(c.postnet_channels, c.n_mels)

    # ---- shared pieces ------------------------------------------------------------------

    def encode(self, text_ids: torch.Tensor, text_lengths: torch.Tensor | None = None) -> EncoderOutput:
        """text_ids (B, N) int64, text_lengths (B,) (default: all N) -> attention keys/values."""
        text_lengths = checked_text(text_ids, text_lengths, self.config.n_symbols)
        N = text_ids.shape[1]
        mask = length_mask(text_lengths, N)[..., None].to(self.attn_key.weight.dtype)  # (B, N, 1)
        keys, values = self.encoder(text_ids.long(), mask)  # (B, N, E) each
        # Positions stay float32 even under autocast: bf16 cannot count past 256 exactly.
        positions = torch.arange(N, device=keys.device, dtype=torch.float32) * self.config.key_position_rate
        keys = self.attn_key(keys) + sinusoid(positions, self.config.attention_dim)  # (B, N, A)
        return EncoderOutput(keys, self.attn_value(values), text_lengths)

    def _attend(self, query: torch.Tensor, steps: torch.Tensor, enc: EncoderOutput,
                allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, S, C) at decoder steps (S,) float, allowed (B, S|1, N) bool
        -> context (B, S, C), weights (B, S, N)."""
        c = self.config
        q = self.attn_query(query) + sinusoid(steps * c.query_position_rate, c.attention_dim)  # (B, S, A)
        scores = (q @ enc.keys.transpose(1, 2)) / math.sqrt(c.attention_dim)  # (B, S, N)
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        return self.attn_out(weights @ enc.values), weights

    def apply_postnet(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Refine mel (B, T, n_mels) with the non-causal postnet (identity when disabled).
        Frames past `lengths` are zeroed, after every layer too, so that padding never leaks
        into an utterance. Output frame t depends on input frames t +- `postnet_lookahead`
        only: a stream can run this on windows with that much context on each side and keep
        the middle, which equals running it on the whole mel."""
        if not self.config.postnet:
            return mel
        B, T, _ = mel.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=mel.device)
        mask = length_mask(lengths, T)[..., None].to(mel.dtype)  # (B, T, 1)
        x = self.postnet_in(mel) * mask  # (B, T, P)
        for conv in self.postnet_convs:
            x = conv(x) * mask
        # In float32 even under bf16 autocast: bf16 rounds 1 - LOGIT_EPS to 1, whose logit is inf.
        residual = self.postnet_out(x).float()
        return torch.sigmoid(torch.logit(mel.float(), eps=LOGIT_EPS) + residual) * mask

    @property
    def postnet_lookahead(self) -> int:
        """Frames of future (and past) context one postnet output frame depends on."""
        c = self.config
        return c.postnet_layers * (c.postnet_kernel // 2) if c.postnet else 0

    # ---- training -----------------------------------------------------------------------

    def forward(self, text_ids: torch.Tensor, text_lengths: torch.Tensor, mel: torch.Tensor,
                mel_lengths: torch.Tensor, decoder_input: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Teacher-forced over the whole utterance. mel (B, T, n_mels) is zero-padded inside to
        S = ceil(T / r) steps; the mel outputs are cut back to T frames. Returns mel_before,
        mel_after (B, T, n_mels), done_logits (B, S), alignment (B, S, N). The decoder reads
        ``decoder_input`` (B, T, n_mels) instead of ``mel`` where given (frames it made itself,
        in training against exposure bias)."""
        c = self.config
        if mel.dim() != 3 or mel.shape[-1] != c.n_mels:
            raise ValueError(f"mel must be (B, T, {c.n_mels}), got {tuple(mel.shape)}")
        B, T, M = mel.shape
        if mel_lengths.shape != (B,) or mel_lengths.min() < 1 or mel_lengths.max() > T:
            raise ValueError(f"mel_lengths must be (B,) = ({B},) with values in [1, {T}], "
                             f"got {mel_lengths.tolist()}")
        S = -(-T // c.r)
        enc = self.encode(text_ids, text_lengths)
        feed = mel if decoder_input is None else decoder_input
        grouped = F.pad(feed, (0, 0, 0, S * c.r - T)).reshape(B, S, c.r * M)  # (B, S, r*M)
        # Step s sees the frames of step s-1; zeros before the first.
        x = self.prenet(torch.cat([grouped.new_zeros(B, 1, c.r * M), grouped[:, :-1]], dim=1))  # (B, S, C)
        for conv in self.query_convs:
            x = conv(x)
        allowed = length_mask(enc.lengths, text_ids.shape[1])[:, None, :]  # (B, 1, N)
        steps = torch.arange(S, device=mel.device, dtype=torch.float32)
        context, alignment = self._attend(x, steps, enc, allowed)
        x = (x + context) * SQRT_HALF
        for conv in self.converter_convs:
            x = conv(x)
        mel_before = torch.sigmoid(self.mel_out(x)).reshape(B, S * c.r, M)[:, :T]  # (B, T, M)
        return {
            "mel_before": mel_before,
            "mel_after": self.apply_postnet(mel_before, mel_lengths),
            "done_logits": self.done_out(x)[..., 0],  # (B, S)
            "alignment": alignment,  # (B, S, N)
        }

    def loss(self, outputs: dict[str, torch.Tensor], mel: torch.Tensor, mel_lengths: torch.Tensor,
             text_lengths: torch.Tensor, guided_weight: float = 1.0) -> dict[str, torch.Tensor]:
        """Losses of `forward` outputs against the target mel (B, T, n_mels):
        L1 before/after the postnet over real frames, BCE on done (1 at and after each
        utterance's last step, padded steps included), guided attention (mean off-diagonal
        attention mass per real step), and their sum `total`."""
        c = self.config
        B, T, M = mel.shape
        frames = length_mask(mel_lengths, T)[..., None].to(mel.dtype)  # (B, T, 1)
        n_values = frames.sum() * M
        losses = {"mel_before": ((outputs["mel_before"] - mel).abs() * frames).sum() / n_values}
        if c.postnet:
            losses["mel_after"] = ((outputs["mel_after"] - mel).abs() * frames).sum() / n_values
        done_logits, alignment = outputs["done_logits"], outputs["alignment"]
        S, N = alignment.shape[1:]
        step_lengths = -(-mel_lengths.long() // c.r)  # (B,)
        done_target = (torch.arange(S, device=mel.device)[None, :] >= step_lengths[:, None] - 1)
        losses["done"] = F.binary_cross_entropy_with_logits(done_logits, done_target.to(done_logits.dtype))
        w = guided_attention_weights(text_lengths.long(), step_lengths, S, N, c.guided_attention_g)
        losses["guided_attention"] = (alignment * w).sum() / step_lengths.sum()
        losses["total"] = sum(v for k, v in losses.items() if k != "guided_attention") \
            + guided_weight * losses["guided_attention"]
        return losses

    # ---- generation ---------------------------------------------------------------------

    def init_state(self, enc: EncoderOutput, max_steps: int | None = None) -> DecoderState:
        """The state before the first step: zero frames and conv buffers (the causal left
        padding of `forward`), attention at the first symbol. Each utterance stops after at
        most max_steps_per_symbol * its length steps, and after `max_steps` if given."""
        c = self.config
        B, device, dtype = enc.keys.shape[0], enc.keys.device, enc.keys.dtype
        limit = enc.lengths * c.max_steps_per_symbol
        if max_steps is not None:
            if max_steps < 1:
                raise ValueError(f"max_steps must be >= 1, got {max_steps}")
            limit = limit.clamp(max=max_steps)
        buffers = tuple(torch.zeros(B, conv.context, c.decoder_channels, device=device, dtype=dtype)
                        for conv in [*self.query_convs, *self.converter_convs])
        zeros = torch.zeros(B, dtype=torch.long, device=device)
        return DecoderState(step=0, prev_frames=torch.zeros(B, c.r, c.n_mels, device=device, dtype=dtype),
                            conv_buffers=buffers, last_attended=zeros, stay=zeros, n_steps=zeros, limit=limit,
                            finished=torch.zeros(B, dtype=torch.bool, device=device))

    def step(self, enc: EncoderOutput, state: DecoderState, monotonic: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, DecoderState]:
        """One decoder step from state.prev_frames (to teacher-force, pass a state with
        prev_frames replaced). Returns frames (B, r, n_mels), done_prob (B,), attention (B, N)
        and the next state, whose prev_frames are these frames.

        monotonic=True lets step attend only [last, last + attention_window) (the first step
        only the first symbol); the new last
        is the argmax of that attention, so it never decreases. With max_steps_on_symbol, a
        window that has stayed on one symbol that long starts one symbol later. An utterance
        finishes when it attends its last symbol (EOS) and done_prob > 0.5, when it has attended
        EOS max_steps_on_symbol steps in a row, or at its step limit; finished utterances keep
        stepping with the batch, but their n_steps no longer grows."""
        c = self.config
        B, N = enc.keys.shape[:2]
        x = self.prenet(state.prev_frames.reshape(B, 1, c.r * c.n_mels))  # (B, 1, C)
        buffers = list(state.conv_buffers)  # query stack first, then converter stack
        for i, conv in enumerate(self.query_convs):
            x, buffers[i] = conv.step(x, buffers[i])
        allowed = length_mask(enc.lengths, N)  # (B, N)
        if monotonic:
            pos = torch.arange(N, device=x.device)[None, :]
            stuck = (state.stay >= c.max_steps_on_symbol) if c.max_steps_on_symbol else torch.zeros_like(state.finished)
            start = torch.minimum(state.last_attended + stuck.long(), enc.lengths - 1)[:, None]
            # Every utterance starts on its first symbol: a first step that jumped ahead
            # would drop the opening sounds of a short sentence.
            width = 1 if state.step == 0 else c.attention_window
            allowed = allowed & (pos >= start) & (pos < start + width)
        steps = torch.full((1,), float(state.step), device=x.device, dtype=torch.float32)
        context, attn = self._attend(x, steps, enc, allowed[:, None, :])
        x = (x + context) * SQRT_HALF
        for i, conv in enumerate(self.converter_convs, start=len(self.query_convs)):
            x, buffers[i] = conv.step(x, buffers[i])
        frames = torch.sigmoid(self.mel_out(x)).reshape(B, c.r, c.n_mels)
        done_prob = torch.sigmoid(self.done_out(x))[:, 0, 0]  # (B,)
        attn = attn[:, 0]  # (B, N)
        last = attn.argmax(dim=-1)
        stay = torch.where(last == state.last_attended, state.stay + 1, torch.ones_like(state.stay))
        n_steps = state.n_steps + (~state.finished).long()
        at_end = last >= enc.lengths - 1
        lingered = (stay >= c.max_steps_on_symbol) if monotonic and c.max_steps_on_symbol else torch.zeros_like(at_end)
        stop = (at_end & ((done_prob > DONE_THRESHOLD) | lingered)) | (n_steps >= state.limit)
        new_state = DecoderState(step=state.step + 1, prev_frames=frames, conv_buffers=tuple(buffers),
                                 last_attended=last, stay=stay, n_steps=n_steps, limit=state.limit,
                                 finished=state.finished | stop)
        return frames, done_prob, attn, new_state

    @torch.no_grad()
    def generate_steps(self, enc: EncoderOutput, state: DecoderState | None = None, monotonic: bool = True
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, DecoderState]]:
        """Yield what `step` returns, step after step, until every utterance has finished.
        Start from `state` (default: `init_state(enc)`) to resume where an earlier call was
        left. The frames are pre-postnet; see `apply_postnet` for exact windowed refining."""
        state = self.init_state(enc) if state is None else state
        while not bool(state.finished.all()):
            frames, done_prob, attn, state = self.step(enc, state, monotonic)
            yield frames, done_prob, attn, state

    @torch.no_grad()
    def generate(self, text_ids: torch.Tensor, text_lengths: torch.Tensor | None = None,
                 max_steps: int | None = None, monotonic: bool = True) -> Generation:
        """Text ids (B, N) -> mel after the postnet, frames per utterance, alignment. Call
        `eval()` first: dropout stays on in training mode."""
        enc = self.encode(text_ids, text_lengths)
        state = self.init_state(enc, max_steps)
        frames, attns = [], []
        for f, _, a, state in self.generate_steps(enc, state, monotonic):
            frames.append(f)  # (B, r, M)
            attns.append(a)  # (B, N)
        S = len(frames)
        lengths = state.n_steps * self.config.r
        mel = torch.cat(frames, dim=1) * length_mask(lengths, S * self.config.r)[..., None]  # (B, T, M)
        alignment = torch.stack(attns, dim=1) * length_mask(state.n_steps, S)[..., None]  # (B, S, N)
        return Generation(self.apply_postnet(mel, lengths), lengths, alignment)

    @torch.no_grad()
    def speak(self, text_ids, text_lengths=None, rate: float = 1.0) -> Speech:
        """`generate`, its attention spread over the frames of each step; a ``rate`` other than
        1 resamples the mel in time (the decoder has no durations to scale), so the pitch
        stays and every frame, pauses included, lasts 1 / rate as long."""
        gen = self.generate(text_ids, text_lengths)
        r = self.config.r
        alignment = gen.alignment.repeat_interleave(r, dim=1)  # (B, T, N)
        mel, lengths = gen.mel, gen.lengths
        if rate != 1.0:
            frames = torch.clamp(torch.round(lengths / rate), min=1).long()
            T = int(frames.max())
            # Frame t of the new mel is frame t * rate of the old one (linear between frames).
            mel = F.interpolate(mel.transpose(1, 2), size=max(1, round(mel.shape[1] / rate)), mode="linear",
                                align_corners=True).transpose(1, 2)[:, :T]
            source = torch.clamp((torch.arange(T, device=mel.device) * rate).round().long(), max=alignment.shape[1] - 1)
            alignment = alignment[:, source]
            mel = mel * length_mask(frames, T)[..., None]
            alignment = alignment * length_mask(frames, T)[..., None]
            lengths = frames
        return Speech(mel, lengths, alignment)
