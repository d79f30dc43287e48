"""The reference generator behind the backend interface: `WaveNet.generate`, plain torch ops
per sample, taking and returning numpy arrays and a `KernelState` like the fast kernels.

Slow (hundreds of samples per second); it is what the fast kernels are tested against, and
the fallback where neither fast kernel can run.
"""

from __future__ import annotations

import numpy as np
import torch

from tts.kernels.state import KernelState, check_lpc, check_sharpness
from tts.vocoder.wavenet import WaveNet, WaveNetConfig, validate_exported


def wavenet_from_exported(weights: dict[str, np.ndarray]) -> WaveNet:
    """Rebuild the generating part of a WaveNet from `export_weights()` output.

    The conditioning layers (frame conv, upsampler, projections) are not in the export and
    keep their initial values: `generate` takes conditioning as an input and never uses them.
    """
    L, R, S, A, n_classes, max_dilation, lpc_order = validate_exported(weights)
    config = WaveNetConfig(n_layers=L, residual_channels=R, skip_channels=S, output_channels=A,
                           max_dilation=max_dilation, n_classes=n_classes, lpc_order=lpc_order,
                           lpc_inputs=lpc_order > 0)
    dilations = tuple(int(d) for d in weights["dilations"])
    if dilations != config.dilations:
        raise ValueError(f"dilations {list(dilations)} are not the pattern 1, 2, ..., "
                         f"{max_dilation} repeated that WaveNet builds")
    model = WaveNet(config).eval()
    w = {name: torch.from_numpy(np.array(a)) for name, a in weights.items()}
    with torch.no_grad():
        model.embedding.weight.copy_(w["embedding"])
        for l in range(L):
            model.dilated[l].weight.copy_(w["dilated_w"][l].permute(1, 2, 0))  # (2R, R, tap)
            model.dilated[l].bias.copy_(w["dilated_b"][l])
            model.res[l].weight.copy_(w["res_w"][l][:, :, None])
            model.res[l].bias.copy_(w["res_b"][l])
            model.skip[l].weight.copy_(w["skip_w"][l][:, :, None])
            model.skip[l].bias.copy_(w["skip_b"][l])
        model.out1.weight.copy_(w["out1_w"][:, :, None])
        model.out1.bias.copy_(w["out1_b"])
        model.out2.weight.copy_(w["out2_w"][:, :, None])
        model.out2.bias.copy_(w["out2_b"])
        if lpc_order:
            model.embedding_signal.weight.copy_(w["embedding_signal"])
            model.embedding_prediction.weight.copy_(w["embedding_prediction"])
    return model


class TorchKernel:
    """`WaveNet.generate` with the fast kernels' interface. Every utterance of a batch must
    be at the same step (the reference state has one step count)."""

    name = "torch"
    takes_tensors = True  # generate's cond as a torch tensor where it lies, else a numpy array

    def __init__(self, weights: dict[str, np.ndarray]):
        self.model = wavenet_from_exported(weights)

    @classmethod
    def from_model(cls, model: WaveNet) -> "TorchKernel":
        """Wrap a model as it is (on its device), without a copy of its weights."""
        kernel = cls.__new__(cls)
        kernel.model = model.eval()
        return kernel

    @property
    def dilations(self) -> tuple[int, ...]:
        return self.model.config.dilations

    @property
    def lpc_order(self) -> int:
        return self.model.signal_order

    def init_state(self, batch_size: int) -> KernelState:
        return KernelState.zeros(batch_size, self.dilations, self.model.config.residual_channels, self.lpc_order)

    def generate(self, cond, uniforms, state: KernelState, *, teacher=None, sharpness=None, lpc=None,
                 return_logits: bool = False):
        """Same contract as `NumbaKernel.generate`: cond (B, T, L, 2R), uniforms (B, T) or
        teacher (B, T), sharpness (B, T) or None, lpc (B, T, order) with LPCNet's inputs,
        state not modified; returns (classes (B, T) int32, new state), plus logits (B, T, 256)
        float32 when return_logits."""
        if not isinstance(state, KernelState):
            raise TypeError(f"state must be a KernelState, got {type(state).__name__}")
        device = self.model.embedding.weight.device
        cond = torch.as_tensor(cond, dtype=torch.float32, device=device)
        uniforms = None if uniforms is None else torch.as_tensor(uniforms, dtype=torch.float32, device=device)
        teacher = None if teacher is None else torch.as_tensor(np.asarray(teacher), dtype=torch.long, device=device)
        if sharpness is not None:
            B, T = cond.shape[:2]
            sharpness = torch.from_numpy(check_sharpness(sharpness, B, T, teacher is not None)).to(device)
        reference = state.to_torch(self.dilations)
        reference = type(reference)([b.to(device) for b in reference.buffers],
                                    reference.last_class.to(device), reference.t, reference.signal.to(device))
        lpc = check_lpc(lpc, cond.shape[0], cond.shape[1], self.lpc_order)
        lpc = torch.from_numpy(lpc).to(device) if self.lpc_order else None
        out = self.model.generate(cond, uniforms, reference, teacher=teacher, sharpness=sharpness, lpc=lpc,
                                  return_logits=return_logits)
        classes = out[0].cpu().numpy().astype(np.int32)
        new = KernelState.from_torch(out[1])
        if return_logits:
            return classes, new, out[2].cpu().numpy()
        return classes, new
