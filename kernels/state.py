"""The generation state every fast WaveNet backend carries between chunks.

It holds exactly what the reference `tts.vocoder.wavenet.WaveNetState` holds, flattened into
plain arrays a kernel can index: the ring buffers of all layers back to back in one
``history`` array (layer l owns rows ``offsets[l] : offsets[l] + dilations[l]``; at step t
its slot ``t % dilations[l]`` holds x_l[t - d] and is overwritten with x_l[t]), the class of
the previous sample, and the step count. One state serves a batch of utterances; each
utterance has its own step count so utterances may start at different times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tts.vocoder.inference import START_CLASS


@dataclass
class KernelState:
    history: np.ndarray  # (B, sum(dilations), R) float32
    last_class: np.ndarray  # (B,) int32
    t: np.ndarray  # (B,) int64, samples generated so far per utterance
    # LPCNet's inputs: the signal's last lpc_order samples, oldest first (B, order) float64;
    # (B, 0) for a network whose predictor runs after the kernel.
    signal: np.ndarray | None = None

    def __post_init__(self):
        if self.signal is None:
            self.signal = np.zeros((len(self.last_class), 0), np.float64)

    @staticmethod
    def offsets(dilations) -> np.ndarray:
        """Start row of each layer's ring in ``history``: (L,) int64."""
        d = np.asarray(dilations, dtype=np.int64)
        return np.concatenate([[0], np.cumsum(d)[:-1]]).astype(np.int64)

    @classmethod
    def zeros(cls, batch_size: int, dilations, residual_channels: int, lpc_order: int = 0) -> "KernelState":
        """Start from silence, as `WaveNet.init_state` does."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rows = int(np.sum(dilations))
        return cls(np.zeros((batch_size, rows, residual_channels), np.float32),
                   np.full(batch_size, START_CLASS, np.int32), np.zeros(batch_size, np.int64),
                   np.zeros((batch_size, lpc_order), np.float64))

    def copy(self) -> "KernelState":
        return KernelState(self.history.copy(), self.last_class.copy(), self.t.copy(), self.signal.copy())

    @classmethod
    def from_torch(cls, state) -> "KernelState":
        """The reference's `tts.vocoder.wavenet.WaveNetState`, flattened."""
        import torch

        history = torch.cat(state.buffers, dim=1).detach().cpu().numpy().astype(np.float32)
        b = history.shape[0]
        return cls(np.ascontiguousarray(history), state.last_class.cpu().numpy().astype(np.int32),
                   np.full(b, state.t, np.int64),
                   np.ascontiguousarray(state.signal.detach().cpu().numpy(), dtype=np.float64))

    def to_torch(self, dilations):
        """Back into the reference's `tts.vocoder.wavenet.WaveNetState`."""
        import torch

        from tts.vocoder.wavenet import WaveNetState

        if len(set(self.t.tolist())) != 1:
            raise ValueError("the reference state needs every utterance at the same step")
        h = torch.from_numpy(self.history.copy())
        buffers = list(torch.split(h, list(dilations), dim=1))
        return WaveNetState([b.contiguous() for b in buffers], torch.from_numpy(self.last_class.astype(np.int64)),
                            int(self.t[0]), torch.from_numpy(self.signal.astype(np.float64)))


def check_state(state: KernelState, batch: int, dilations, residual_channels: int, n_classes: int,
                lpc_order: int = 0) -> None:
    """Raise an error naming the field if ``state`` does not fit the model and the batch."""
    rows, R = int(np.sum(dilations)), residual_channels
    if not isinstance(state, KernelState):
        raise TypeError(f"state must be a KernelState, got {type(state).__name__}")
    if state.history.shape != (batch, rows, R):
        raise ValueError(f"state.history has shape {state.history.shape}, expected "
                         f"(B, sum(dilations), R) = ({batch}, {rows}, {R})")
    if state.last_class.shape != (batch,) or state.t.shape != (batch,):
        raise ValueError(f"state.last_class and state.t must have shape ({batch},), got "
                         f"{state.last_class.shape} and {state.t.shape}")
    if state.signal.shape != (batch, lpc_order):
        raise ValueError(f"state.signal has shape {state.signal.shape}, expected (B, lpc_order) = "
                         f"({batch}, {lpc_order})")
    if ((state.last_class < 0) | (state.last_class >= n_classes)).any():
        raise ValueError(f"state.last_class must be classes in [0, {n_classes})")


def check_sharpness(sharpness, batch: int, steps: int, teacher_forced: bool) -> np.ndarray:
    """The per-sample sharpness as a kernel takes it: (B, T) float32, or (B, 0) for none.

    Raises an error naming the argument if it does not fit, is not positive and finite, or
    comes with teacher forcing (nothing is sampled then)."""
    if sharpness is None:
        return np.zeros((batch, 0), np.float32)
    if teacher_forced:
        raise ValueError("sharpness applies to sampling; pass it with uniforms, not teacher")
    sharpness = np.ascontiguousarray(sharpness, dtype=np.float32)
    if sharpness.shape != (batch, steps):
        raise ValueError(f"sharpness has shape {sharpness.shape}, expected (B, T) = ({batch}, {steps})")
    if sharpness.size and not (np.isfinite(sharpness).all() and sharpness.min() > 0):
        raise ValueError("sharpness must be finite and > 0")
    return sharpness


def check_lpc(lpc, batch: int, steps: int, order: int) -> np.ndarray:
    """Each sample's prediction coefficients as a kernel takes them: (B, T, order) float32
    for a network with LPCNet's inputs (order > 0), (B, T, 0) for one without (``lpc`` None).
    Raises an error naming the argument if it does not fit."""
    if order == 0:
        if lpc is not None:
            raise ValueError("lpc goes with a network with LPCNet's inputs; this one has none")
        return np.zeros((batch, steps, 0), np.float32)
    if lpc is None:
        raise ValueError(f"this network runs its predictor in the loop: pass lpc (B, T, {order})")
    lpc = np.ascontiguousarray(lpc, dtype=np.float32)
    if lpc.shape != (batch, steps, order):
        raise ValueError(f"lpc has shape {lpc.shape}, expected (B, T, order) = ({batch}, {steps}, {order})")
    return lpc
