"""The WaveNet vocoder: a mel spectrogram in, 8-bit mu-law audio out, one sample at a time.

Layout: every public tensor is (B, T, C): audio classes (B, T), mel (B, T_frames, n_mels),
logits (B, T, n_classes), conditioning (B, T, L, 2R), and `forward` runs time-major too. Only
the upsampler runs in (B, C, T), because that is what its depthwise conv1d wants; it converts
at its entry and exit.

The network, per sample t (L layers, R residual, S skip, A output channels):

    x = embedding[class of sample t-1]                      # (R,)  the causal input layer
        (+ embedding_signal[class of s[t-1]] + embedding_prediction[class of p[t]] with
         lpc_inputs: the signal and the prediction of the predictor running in the loop)
    for layer l with dilation d:
        h = W0 x_l[t-d] + W1 x_l[t] + b + cond[t, l]        # (2R,) kernel-2 dilated causal conv
        z = tanh(h[:R]) * sigmoid(h[R:])                    # (R,)  gated activation
        x = x + res(z);  skip += skip(z)
    logits = out2(relu(out1(relu(skip))))                   # (n_classes,)

Three ways to run it, all on the same weights:
- `forward` / `loss`: teacher-forced and parallel over time, for training.
- `generate`: the reference incremental generator, plain torch ops per sample, with all
  generation state in a `WaveNetState`. Every fast kernel is tested against it.
- `export_weights` / `export_conditioning`: the arrays the fast kernels take.
Its config, the kernels' weight layout and its conditioning at inference also exist without
PyTorch, in `tts.vocoder.inference`, which is what a voice speaks through on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tts.vocoder.inference import (START_CLASS, ExportedDims, WaveNetConfig, kernel_weights, model_to_signal,
                                polyphase_gather, signal_to_model, validate_exported)
from tts.vocoder.lpc import mu_law_tables

__all__ = ["START_CLASS", "ExportedDims", "WaveNet", "WaveNetConfig", "WaveNetState", "model_to_signal",
           "sample_classes", "signal_to_model", "teacher_inputs", "validate_exported"]


def _gate(h: torch.Tensor, R: int) -> torch.Tensor:
    """The gated unit tanh(h[..., :R]) * sigmoid(h[..., R:]), with tanh(a) = 2 sigmoid(2a) - 1:
    one sigmoid over all 2R channels, because PyTorch's CPU tanh is several times slower
    than its sigmoid."""
    scale = torch.ones(2 * R, dtype=h.dtype, device=h.device)
    scale[:R] = 2.0
    s = torch.sigmoid(h * scale)  # (..., 2R)
    return (2.0 * s[..., :R] - 1.0) * s[..., R:]


def _polyphase(weight: torch.Tensor, scale: int) -> torch.Tensor:
    """`tts.vocoder.inference.polyphase` on the module's weight (C, 2 * scale + 1), so that
    training reaches it: its (C, scale, 3) equivalent on the steps before the repeat."""
    gather = torch.from_numpy(polyphase_gather(scale)).to(weight.device, weight.dtype)  # (scale, taps, 3)
    return torch.einsum("ck,pkq->cpq", weight, gather)


@dataclass
class WaveNetState:
    """Everything incremental generation carries from one sample (or chunk) to the next.

    Layer l with dilation d keeps a ring buffer of its last d inputs: at step t, slot t % d
    holds x_l[t-d]; it is read, then overwritten with x_l[t]. The ring position is thus t % d.
    """

    buffers: list[torch.Tensor]  # per layer (B, d_l, R)
    last_class: torch.Tensor  # (B,) int64, class of the previous sample: the next input
    t: int  # samples generated so far
    # With lpc_inputs: the signal's last lpc_order samples, oldest first, float64 (B, order);
    # (B, 0) otherwise.
    signal: torch.Tensor

    def clone(self) -> WaveNetState:
        return WaveNetState([b.clone() for b in self.buffers], self.last_class.clone(), self.t, self.signal.clone())


def sample_classes(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: the smallest k with cumsum(softmax(logits))[k] > u.

    logits (..., n_classes), uniforms (...) in [0, 1) -> classes (...) int64. Rounding can
    leave the last cdf entry a hair under 1, so the class is clamped to n_classes - 1.
    """
    cdf = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)
    # cdf is non-decreasing, so the count of entries <= u is the first index where cdf > u.
    k = (cdf <= uniforms.unsqueeze(-1)).sum(dim=-1)
    return k.clamp(max=logits.shape[-1] - 1)


def teacher_inputs(audio_classes: torch.Tensor) -> torch.Tensor:
    """Shift audio classes (B, T) right by one sample, starting from START_CLASS: the input
    at t is the class of sample t-1."""
    start = torch.full_like(audio_classes[:, :1], START_CLASS)
    return torch.cat([start, audio_classes[:, :-1]], dim=1)


class WaveNet(nn.Module):
    """Mel frames to 8-bit mu-law samples, one sample from the ones before (teacher-forced in
    `forward`, one step at a time in `generate`)."""

    kind = "wavenet"  # its vocoder kind in a voice folder (tts.vocoder.choice.VOCODERS)

    def __init__(self, config: WaveNetConfig = WaveNetConfig()):
        super().__init__()
        self.config = c = config
        R, S, A = c.residual_channels, c.skip_channels, c.output_channels
        self.embedding = nn.Embedding(c.n_classes, R)
        if c.lpc_inputs:
            self.embedding_signal = nn.Embedding(c.n_classes, R)
            self.embedding_prediction = nn.Embedding(c.n_classes, R)
            nn.init.zeros_(self.embedding_signal.weight)
            nn.init.zeros_(self.embedding_prediction.weight)
        # Conditioning: frame conv, then upsampling stages (see WaveNetConfig).
        self.frame_conv = nn.Conv1d(c.n_mels, c.cond_channels, kernel_size=3, padding=1)
        self.cond_blocks = nn.ModuleList(
            nn.ModuleList(nn.Conv1d(c.cond_channels, c.cond_channels, kernel_size=3, padding=1) for _ in range(2))
            for _ in range(c.cond_blocks)
        )
        for _, second in self.cond_blocks:
            nn.init.zeros_(second.weight)
            nn.init.zeros_(second.bias)
        self.upsample_convs = nn.ModuleList(
            nn.Conv1d(c.cond_channels, c.cond_channels, 2 * s + 1, groups=c.cond_channels,
                      bias=False)
            for s in c.upsample_scales
        )
        for conv in self.upsample_convs:
            nn.init.constant_(conv.weight, 1.0 / conv.kernel_size[0])
        # No bias: the dilated conv's bias already covers it.
        self.cond_proj = nn.ModuleList(
            nn.Conv1d(c.cond_channels, 2 * R, 1, bias=False) for _ in range(c.n_layers)
        )
        # Residual stack. dilated.weight[:, :, 0] multiplies x[t-d], [:, :, 1] multiplies x[t].
        self.dilated = nn.ModuleList(nn.Conv1d(R, 2 * R, 2, dilation=d) for d in c.dilations)
        self.res = nn.ModuleList(nn.Conv1d(R, R, 1) for _ in range(c.n_layers))
        self.skip = nn.ModuleList(nn.Conv1d(R, S, 1) for _ in range(c.n_layers))
        self.out1 = nn.Conv1d(S, A, 1)
        self.out2 = nn.Conv1d(A, c.n_classes, 1)

    # ---- conditioning -------------------------------------------------------------------

    @torch.no_grad()
    def load_narrower(self, source: WaveNet) -> list[str]:
        """Take a trained network with fewer residual channels (and otherwise this network's
        shape, or fewer frame-rate blocks, or no LPCNet inputs) so that this one says exactly
        what it says: each old weight goes where its channel now is, the new residual
        channels start at zero (embeddings, residual outputs), and the new gated units keep
        their random inputs but start with no way out (zero residual and skip weights), so
        their outputs are free to grow from the first step. Returns the parameters the
        source lacks entirely (left as `__init__` made them)."""
        R, R0 = self.config.residual_channels, source.config.residual_channels
        if R0 > R:
            raise ValueError(f"a network of {R0} residual channels cannot be narrowed to {R}")
        gates = torch.cat([torch.arange(R0), R + torch.arange(R0)])  # old tanh and sigmoid rows
        old = source.state_dict()
        missing = []
        for name, target in self.state_dict().items():
            if name not in old:
                missing.append(name)
                continue
            weight, layer = old[name], name.split(".")[0]
            if weight.shape == target.shape:
                target.copy_(weight)
                continue
            if layer.startswith("embedding"):  # (classes, R): new channels silent
                target.zero_()
                target[:, :R0] = weight
            elif layer in ("dilated", "cond_proj"):  # (2R, R or C, k), bias (2R,)
                if target.ndim == 1:
                    target[gates] = weight
                else:
                    target[gates, :weight.shape[1]] = weight
            elif layer == "res":  # (R, R, 1), bias (R,): the new channels written by nothing yet
                target.zero_()
                if target.ndim == 1:
                    target[:R0] = weight
                else:
                    target[:R0, :R0] = weight
            elif layer == "skip":  # (S, R, 1): the new gated units not heard yet
                target.zero_()
                target[:, :R0] = weight
            else:
                raise ValueError(f"{name}: {tuple(weight.shape)} does not fit {tuple(target.shape)}")
        return missing

    def _check_mel(self, mel: torch.Tensor) -> None:
        if mel.ndim != 3 or mel.shape[2] != self.config.n_mels:
            raise ValueError(f"mel has shape {tuple(mel.shape)}, "
                             f"expected (B, T_frames, {self.config.n_mels})")

    def frame_features(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, T_frames, n_mels) -> the frame-rate features (B, C_cond, T_frames): the frame
        conv, then the frame-rate residual blocks."""
        h = F.leaky_relu(self.frame_conv(mel.transpose(1, 2)), 0.2)  # (B, C_cond, T_frames)
        for first, second in self.cond_blocks:
            h = h + second(F.leaky_relu(first(h), 0.2))
        return h

    def upsample(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, T_frames, n_mels) -> features (B, T_frames * hop_length, C_cond).

        Each stage repeats every step `scale` times and smooths with a (2 * scale + 1)-tap
        depthwise filter, replicating the edges. That equals, for each of the `scale` phases
        of an output step, a 3-tap filter over the input steps before the repeat: the same
        numbers at 3 instead of 2 * scale + 1 multiply-adds per output, computed here as such.
        """
        self._check_mel(mel)
        h = self.frame_features(mel).transpose(1, 2)  # (B, T_frames, C_cond)
        for scale, conv in zip(self.config.upsample_scales, self.upsample_convs):
            padded = torch.cat([h[:, :1], h, h[:, -1:]], dim=1)  # (B, T + 2, C): replicated edges
            taps = padded.unfold(1, 3, 1)  # (B, T, C, 3): steps t-1, t, t+1
            phases = torch.einsum("btcq,cpq->btpc", taps, _polyphase(conv.weight[:, 0], scale))  # (B, T, scale, C)
            h = phases.reshape(h.shape[0], -1, h.shape[2])  # (B, T * scale, C)
        return h

    def conditioning(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, T_frames, n_mels) -> cond (B, T_samples, L, 2R), every layer's gate input.

        Not causal in time (a frame sees its neighbours): it is computed for the whole
        utterance before generation starts.
        """
        return self.project(self.upsample(mel))  # (B, T, L, 2R)

    @property
    def upsample_context(self) -> int:
        """Mel frames on each side that one frame's upsampled features depend on."""
        return self.config.upsample_context

    def upsample_frames(self, mel: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """The features of `upsample(mel)` for frames [start, stop) only: (B, (stop - start) *
        hop_length, C_cond), computed from a window with `upsample_context` frames
        of margin, so they equal the whole utterance's to float rounding. This lets a long
        utterance be vocoded piece by piece, starting before all of it is upsampled."""
        context, hop = self.upsample_context, self.config.hop_length
        lo, hi = max(0, start - context), min(mel.shape[1], stop + context)
        up = self.upsample(mel[:, lo:hi])  # (B, (hi - lo) * hop, C_cond)
        return up[:, (start - lo) * hop:(stop - lo) * hop]

    def project(self, up: torch.Tensor) -> torch.Tensor:
        """Upsampled features (B, T, C_cond) -> every layer's conditioning (B, T, L, 2R), as
        one matrix product straight into the kernels' (T, L, 2R) layout."""
        weight = torch.cat([proj.weight[:, :, 0] for proj in self.cond_proj])  # (L * 2R, C_cond)
        B, T = up.shape[:2]
        return (up @ weight.T).view(B, T, self.config.n_layers, -1)

    # ---- training -------------------------------------------------------------------------

    def _embed(self, audio_classes_in: torch.Tensor, signal_in: torch.Tensor | None,
               prediction_in: torch.Tensor | None) -> torch.Tensor:
        """The first layer's input (B, T, R): the previous excitation's embedding, plus with
        lpc_inputs those of the signal s[t-1] and the prediction p[t] (classes (B, T))."""
        x = self.embedding(audio_classes_in)  # (B, T, R)
        if (signal_in is None or prediction_in is None) == self.config.lpc_inputs:
            raise ValueError("signal_in and prediction_in go with lpc_inputs, both or neither" if
                             self.config.lpc_inputs or signal_in is not None or prediction_in is not None
                             else "this network takes no signal or prediction inputs")
        if self.config.lpc_inputs:
            x = x + self.embedding_signal(signal_in) + self.embedding_prediction(prediction_in)
        return x

    def forward(self, audio_classes_in: torch.Tensor, mel: torch.Tensor, signal_in: torch.Tensor | None = None,
                prediction_in: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced: audio_classes_in (B, T) int64, the class of sample t-1 at t (see
        `teacher_inputs`), mel (B, T / hop_length, n_mels) -> logits (B, T, n_classes) for
        sample t. With lpc_inputs, signal_in and prediction_in (B, T) int64: the classes of
        s[t-1] and p[t] at t (`tts.vocoder.lpc.noisy_excitation`).

        Runs time-major, (B, T, C): with a kernel of 2, the dilated causal convolution is one
        matrix product of [x[t-d], x[t]] with its two taps side by side, and every 1x1
        convolution is a matrix product over all B * T samples at once, which the BLAS runs
        far closer to the core's peak than small-channel conv1d. The skip outputs of all
        layers are one product of the layers' gated outputs side by side with the skip
        weights stacked, and every layer's conditioning is one product (`project`).
        """
        if audio_classes_in.ndim != 2:
            raise ValueError(f"audio classes have shape {tuple(audio_classes_in.shape)}, expected (B, T)")
        self._check_mel(mel)
        T, expected = audio_classes_in.shape[1], mel.shape[1] * self.config.hop_length
        if T != expected:
            raise ValueError(f"audio has {T} samples but mel has {mel.shape[1]} frames; "
                             f"expected {mel.shape[1]} * {self.config.hop_length} = {expected} samples")
        R, L = self.config.residual_channels, self.config.n_layers
        up = self.upsample(mel)  # (B, T, C_cond)
        x = self._embed(audio_classes_in, signal_in, prediction_in)  # (B, T, R)
        gated = []
        for l, d in enumerate(self.config.dilations):
            # x[t-d], zero before the first sample: the zero-filled ring buffers `generate`
            # starts from.
            past = F.pad(x, (0, 0, min(d, T), 0))[:, :T]  # (B, T, R)
            taps = self.dilated[l].weight  # (2R, R, 2): tap 0 x[t-d], tap 1 x[t]
            h = F.linear(torch.cat([past, x], dim=-1), torch.cat([taps[:, :, 0], taps[:, :, 1]], dim=1),
                         self.dilated[l].bias) + F.linear(up, self.cond_proj[l].weight[:, :, 0])  # (B, T, 2R)
            z = _gate(h, R)  # (B, T, R)
            gated.append(z)
            if l < L - 1:  # the last layer's residual output feeds nothing
                x = x + F.linear(z, self.res[l].weight[:, :, 0], self.res[l].bias)  # (B, T, R)
        skip_w = torch.cat([conv.weight[:, :, 0] for conv in self.skip], dim=1)  # (S, L * R)
        skip_b = torch.stack([conv.bias for conv in self.skip]).sum(0)  # (S,)
        skip = F.linear(torch.cat(gated, dim=-1), skip_w, skip_b)  # (B, T, S)
        hidden = F.relu(F.linear(F.relu(skip), self.out1.weight[:, :, 0], self.out1.bias))  # (B, T, A)
        return F.linear(hidden, self.out2.weight[:, :, 0], self.out2.bias)  # (B, T, n_classes)

    def forward_reference(self, audio_classes_in: torch.Tensor, mel: torch.Tensor,
                          signal_in: torch.Tensor | None = None, prediction_in: torch.Tensor | None = None
                          ) -> torch.Tensor:
        """`forward` written as the network's definition reads, channel-major (B, C, T) with
        conv1d throughout: the upsampler repeats and smooths, each layer runs its dilated,
        residual and skip convolutions one by one. The reference `forward` is tested against
        (logits and gradients), and the baseline `python -m tts.train.bench` measures it by."""
        h = self.frame_features(mel)  # (B, C_cond, T_frames)
        for scale, conv in zip(self.config.upsample_scales, self.upsample_convs):
            h = conv(F.pad(torch.repeat_interleave(h, scale, dim=2), (scale, scale), mode="replicate"))
        x = self._embed(audio_classes_in, signal_in, prediction_in).transpose(1, 2)  # (B, R, T)
        R, skip = self.config.residual_channels, 0
        for l, d in enumerate(self.config.dilations):
            g = self.dilated[l](F.pad(x, (d, 0))) + self.cond_proj[l](h)  # (B, 2R, T)
            z = torch.tanh(g[:, :R]) * torch.sigmoid(g[:, R:])  # (B, R, T)
            skip = skip + self.skip[l](z)  # (B, S, T)
            x = x + self.res[l](z)  # (B, R, T)
        return self.out2(F.relu(self.out1(F.relu(skip)))).transpose(1, 2)  # (B, T, n_classes)

    def loss(self, audio_classes: torch.Tensor, mel: torch.Tensor, reference: bool = False,
             inputs: torch.Tensor | None = None, signal_in: torch.Tensor | None = None,
             prediction_in: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy of predicting each sample from the ones before: audio_classes
        (B, T) int64, mel (B, T / hop_length, n_mels) -> scalar. ``reference``: through
        `forward_reference` (the same numbers, slower). ``inputs`` (B, T): what the network
        sees at t, when not the class of sample t-1 (`teacher_inputs`), as in noise injection;
        ``signal_in``, ``prediction_in``: LPCNet's inputs, as `forward` takes them."""
        logits = self.teacher_logits(audio_classes, mel, reference, inputs, signal_in, prediction_in)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), audio_classes.reshape(-1))

    def teacher_logits(self, audio_classes: torch.Tensor, mel: torch.Tensor, reference: bool = False,
                       inputs: torch.Tensor | None = None, signal_in: torch.Tensor | None = None,
                       prediction_in: torch.Tensor | None = None) -> torch.Tensor:
        """The logits (B, T, n_classes) `loss` scores: every sample predicted from the true
        ones before it (or from ``inputs``, as in noise injection)."""
        forward = self.forward_reference if reference else self.forward
        inputs = teacher_inputs(audio_classes) if inputs is None else inputs
        return forward(inputs, mel, signal_in, prediction_in)

    # ---- reference incremental generation ---------------------------------------------

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> WaveNetState:
        """Start from silence: zero ring buffers, previous sample class START_CLASS."""
        device = self.embedding.weight.device if device is None else device
        R = self.config.residual_channels
        buffers = [torch.zeros(batch_size, d, R, device=device) for d in self.config.dilations]
        last_class = torch.full((batch_size,), START_CLASS, dtype=torch.long, device=device)
        signal = torch.zeros(batch_size, self.signal_order, dtype=torch.float64, device=device)
        return WaveNetState(buffers, last_class, 0, signal)

    @property
    def signal_order(self) -> int:
        """How many past signal samples generation carries (`WaveNetConfig.signal_order`)."""
        return self.config.signal_order

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, uniforms: torch.Tensor | None = None,
                 state: WaveNetState | None = None, *, teacher: torch.Tensor | None = None,
                 sharpness: torch.Tensor | None = None, lpc: torch.Tensor | None = None,
                 return_logits: bool = False):
        """Generate one chunk of samples, one at a time.

        cond (B, T_chunk, L, 2R): this chunk's slice of `conditioning(mel)`.
        uniforms (B, T_chunk) in [0, 1): the random numbers for `sample_classes`.
        state: from `init_state` or the previous chunk; not modified (a new one is returned),
            so splitting cond and uniforms into chunks gives exactly the one-call result.
        teacher (B, T_chunk) int64: teacher forcing; the true classes of this chunk's
            samples, fed back instead of sampled ones (then uniforms must be None).
        sharpness (B, T_chunk) > 0: sample t is drawn from softmax(sharpness[:, t] * logits)
            (voicing-dependent sampling, `tts.vocoder.voicing`); None: from
            softmax(logits).
        lpc (B, T_chunk, lpc_order): with lpc_inputs, each sample's prediction coefficients
            (its frame's `lpc_from_mel`); the predictor runs in the loop, in float64:
            p[t] = sum_k a_k s[t-k] (k = 1 first), s[t] = p[t] + the decoded class of sample t.

        Returns (classes (B, T_chunk) int64, state), plus logits (B, T_chunk, n_classes)
        when return_logits. Under teacher forcing the classes are the teacher's.
        """
        c = self.config
        L, R = c.n_layers, c.residual_channels
        if cond.ndim != 4 or cond.shape[2:] != (L, 2 * R):
            raise ValueError(f"cond has shape {tuple(cond.shape)}, "
                             f"expected (B, T_chunk, L, 2R) = (B, T_chunk, {L}, {2 * R})")
        B, T = cond.shape[:2]
        if (uniforms is None) == (teacher is None):
            raise ValueError("pass exactly one of uniforms (sampling) and teacher (teacher forcing)")
        given = uniforms if teacher is None else teacher
        name = "uniforms" if teacher is None else "teacher"
        if tuple(given.shape) != (B, T):
            raise ValueError(f"{name} has shape {tuple(given.shape)}, "
                             f"expected (B, T_chunk) = ({B}, {T})")
        if sharpness is not None and (teacher is not None or tuple(sharpness.shape) != (B, T)):
            raise ValueError(f"sharpness goes with uniforms, shape (B, T_chunk) = ({B}, {T}); "
                             f"got {tuple(sharpness.shape)}" + (" with teacher" if teacher is not None else ""))
        order = self.signal_order
        if (lpc is None) != (order == 0) or (lpc is not None and tuple(lpc.shape) != (B, T, order)):
            raise ValueError(f"lpc must be (B, T_chunk, lpc_order) = ({B}, {T}, {order}) with lpc_inputs, "
                             f"else None; got {None if lpc is None else tuple(lpc.shape)}")
        state = self.init_state(B, cond.device) if state is None else state.clone()
        if state.last_class.shape[0] != B:
            raise ValueError(f"state is for batch size {state.last_class.shape[0]}, cond for {B}")
        if tuple(state.signal.shape) != (B, order):
            raise ValueError(f"state.signal has shape {tuple(state.signal.shape)}, expected ({B}, {order})")

        w = {name: torch.from_numpy(a).to(cond.device) for name, a in self.export_weights().items()}
        dilations = c.dilations
        if order:
            decoded, bounds = (torch.from_numpy(table).to(cond.device) for table in mu_law_tables(c.n_classes))
            lpc = lpc.to(device=cond.device, dtype=torch.float64)
        classes = torch.empty(B, T, dtype=torch.long, device=cond.device)
        all_logits = torch.empty(B, T, c.n_classes, device=cond.device) if return_logits else None
        for i in range(T):
            x = w["embedding"][state.last_class]  # (B, R)
            if order:
                # One term at a time, k = 1 first: every kernel sums in this order.
                prediction = torch.zeros(B, dtype=torch.float64, device=cond.device)
                for k in range(order):
                    prediction = prediction + lpc[:, i, k] * state.signal[:, order - 1 - k]
                signal_class = torch.searchsorted(bounds, state.signal[:, order - 1:].contiguous())[:, 0]
                prediction_class = torch.searchsorted(bounds, prediction[:, None].contiguous())[:, 0]
                x = x + w["embedding_signal"][signal_class] + w["embedding_prediction"][prediction_class]
            skip = 0
            for l, d in enumerate(dilations):
                slot = state.t % d
                past = state.buffers[l][:, slot]  # (B, R), x_l[t-d]
                h = (past @ w["dilated_w"][l, 0].T + x @ w["dilated_w"][l, 1].T
                     + w["dilated_b"][l] + cond[:, i, l])  # (B, 2R)
                state.buffers[l][:, slot] = x
                z = torch.tanh(h[:, :R]) * torch.sigmoid(h[:, R:])  # (B, R)
                skip = skip + z @ w["skip_w"][l].T + w["skip_b"][l]  # (B, S)
                x = x + z @ w["res_w"][l].T + w["res_b"][l]  # (B, R)
            hidden = F.relu(F.relu(skip) @ w["out1_w"].T + w["out1_b"])  # (B, A)
            logits = hidden @ w["out2_w"].T + w["out2_b"]  # (B, n_classes)
            if teacher is None:
                sharp = logits if sharpness is None else logits * sharpness[:, i, None]
                classes[:, i] = sample_classes(sharp, uniforms[:, i])
            else:
                classes[:, i] = teacher[:, i]
            if return_logits:
                all_logits[:, i] = logits
            state.last_class = classes[:, i].clone()
            if order:
                state.signal = torch.cat([state.signal[:, 1:], (prediction + decoded[classes[:, i]])[:, None]], dim=1)
            state.t += 1
        if return_logits:
            return classes, state, all_logits
        return classes, state

    @torch.no_grad()
    def vocode(self, mel, seed=0, *, voicing=None, backend: str = "auto") -> np.ndarray:
        """mel (T_frames, n_mels) -> float32 audio (T_samples,) in [-1, 1], through the engine's
        own path (`tts.vocoder.runtime.WaveNetVocoder`): the same chunks, sampling, voicing
        sharpness (``voicing``: a `VoicingDetector`, or None) and signal filter a voice speaks
        with, its randomness drawn from ``np.random.default_rng(seed)`` (an int, or a sequence
        such as the synthesizer's ``(seed, sentence)``). ``backend``: the kernel, "auto" the
        fastest usable here; every kernel draws the same samples."""
        from tts.audio import DEFAULT_AUDIO
        from tts.vocoder.choice import WAVENET, VocoderChoice
        from tts.vocoder.runtime import WaveNetVocoder

        device = self.embedding.weight.device
        mel = torch.as_tensor(mel, dtype=torch.float32).cpu().numpy()
        if mel.ndim != 2 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"mel has shape {tuple(mel.shape)}, expected (T_frames, {self.config.n_mels})")
        choice = VocoderChoice(WAVENET, backend).resolve(WAVENET, device.type)
        was_training = self.training
        try:
            vocoder = WaveNetVocoder.from_wavenet(self, choice, DEFAULT_AUDIO, str(device),
                                                  None if voicing is None else voicing.sharpness)
            pieces = [audio for audio, _ in vocoder.stream(mel, np.random.default_rng(seed))]
        finally:
            self.train(was_training)
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    # ---- export for the fast kernels ------------------------------------------------------

    @torch.no_grad()
    def export_weights(self) -> dict[str, np.ndarray]:
        """The weights the fast kernels take: float32 (dilations int32), C-contiguous.

            "embedding": (256, R)          input class -> layer-0 input (the causal input layer)
            "dilated_w": (L, 2, 2R, R)     [layer, tap (0: x[t-d], 1: x[t]), out, in];
                                           out rows: R tanh half, then R sigmoid half
            "dilated_b": (L, 2R)
            "res_w": (L, R, R)             [layer, out, in]
            "res_b": (L, R)
            "skip_w": (L, S, R)            [layer, out, in]
            "skip_b": (L, S)
            "out1_w": (A, S)   "out1_b": (A,)
            "out2_w": (256, A) "out2_b": (256,)
            "dilations": (L,) int32
        and with lpc_inputs:
            "embedding_signal": (256, R)      class of s[t-1] -> added to the layer-0 input
            "embedding_prediction": (256, R)  class of p[t] -> added to the layer-0 input
            "lpc_order": () int32             the predictor's order p

        Per sample, with cond from `export_conditioning`:
            x = embedding[previous class]; skip = 0
            (with lpc_inputs: x += embedding_signal[class(s[t-1])] + embedding_prediction[class(p[t])],
             classes by `tts.vocoder.lpc.mu_law_tables`, see `generate`)
            per layer l: h = dilated_w[l,0] x[t-d] + dilated_w[l,1] x[t] + dilated_b[l] + cond[t,l]
                         z = tanh(h[:R]) * sigmoid(h[R:])
                         x = x + res_w[l] z + res_b[l];  skip += skip_w[l] z + skip_b[l]
            logits = out2_w relu(out1_w relu(skip) + out1_b) + out2_b
        (out2 already divided by the config's sampling temperature) where x[t-d] is layer l's own input d samples ago (zero before the first sample), and
        the first previous class is START_CLASS.
        """
        return kernel_weights(self.config, {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()})

    @torch.no_grad()
    def export_conditioning(self, mel) -> np.ndarray:
        """mel (T_frames, n_mels) for one utterance -> cond (T_frames * hop_length, L, 2R)
        float32, C-contiguous."""
        mel = torch.as_tensor(mel, dtype=torch.float32)
        if mel.ndim != 2:
            raise ValueError(f"mel has shape {tuple(mel.shape)}, expected (T_frames, {self.config.n_mels})")
        cond = self.conditioning(mel[None].to(self.embedding.weight.device))[0]  # (T, L, 2R)
        return np.ascontiguousarray(cond.cpu().numpy(), dtype=np.float32)
