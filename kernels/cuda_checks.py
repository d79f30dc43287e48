"""Checks of the persistent CUDA WaveNet kernel against the torch reference: PTX for sm_90
(no GPU needed), the CUDA simulator, and a real GPU. `python -m tts.kernels.cuda_checks --selftest`
runs them and tests/test_kernels_cuda.py builds on them; tts.kernels.cuda re-exports these
names. The design they check is described in kernels/cuda.py.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from tts.kernels.cuda import LOGITS_ATOL, CudaKernel, cuda_usable
from tts.kernels.cuda_device import _SIGNATURE, _numba_cuda, build_kernel
from tts.kernels.cuda_plan import KernelPlan
from tts.vocoder.wavenet import validate_exported


def margin_uniforms(model, cond, uniforms, sharpness=None, lpc=None):
    """Reference samples, and uniforms moved to the middle of each sampled class's cdf
    interval: the same samples, but no uniform within rounding distance of a cdf step, so
    a kernel that sums in another order must still draw exactly these classes.

    model: a `WaveNet`; cond (B, T, L, 2R), uniforms (B, T), sharpness (B, T) or None and
    lpc (B, T, order) or None (LPCNet's inputs) torch tensors. Returns (classes (B, T) int64,
    uniforms (B, T) float32) torch tensors.
    """
    import torch

    classes, _, logits = model.generate(cond, uniforms, sharpness=sharpness, lpc=lpc, return_logits=True)
    if sharpness is not None:
        logits = logits * sharpness[..., None]
    cdf = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)  # (B, T, 256)
    hi = cdf.gather(-1, classes[..., None])[..., 0]
    lo = cdf.gather(-1, (classes - 1).clamp(min=0)[..., None])[..., 0]
    lo = torch.where(classes > 0, lo, torch.zeros_like(lo))
    return classes, ((lo + hi) / 2).float()


def ptx_for(plan: KernelPlan, cc=(9, 0)) -> str:
    """PTX of the kernel for `plan` (no GPU needed: numba-cuda with NVVM is enough)."""
    cuda = _numba_cuda()
    import numba.cuda.dispatcher as dispatcher

    # numba-cuda compiles the kernel's device functions for the current device, which a
    # machine without a GPU lacks; compile them for the kernel's target instead.
    current_device = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    try:
        ptx, _ = cuda.compile_ptx(build_kernel(plan), _SIGNATURE, cc=cc,
                                  launch_bounds=(plan.threads * plan.utterances_per_block,))
    finally:
        dispatcher.get_current_device = current_device
    return ptx


def local_memory_lines(ptx: str) -> list[str]:
    """Lines of PTX that use per-thread local memory (spilled or stack arrays)."""
    return [line.strip() for line in ptx.splitlines()
            if ".local" in line or "ld.local" in line or "st.local" in line]


def static_shared_lines(ptx: str) -> list[str]:
    """Declarations of fixed-size shared arrays. The kernel keeps everything in the one
    dynamic shared memory (every `.extern .shared` array starts at its base), the only
    kind numba's simulator gives all of a block's threads reliably."""
    return [line.strip() for line in ptx.splitlines()
            if ".shared" in line.split() and ".extern" not in line.split()
            and line.rstrip().endswith("];")]


COUNTER_LOAD = "ld.acquire"  # a hand-off counter, re-read on every poll
DATA_LOAD = "ld.global.cg"  # exchanged activations: L2 only, never a stale L1 line


def _loops(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) line of every loop: a branch back to a label above it."""
    labels = {}
    for i, line in enumerate(lines):
        match = re.match(r"(\$L\w+):", line.strip())
        if match:
            labels[match.group(1)] = i
    loops = []
    for j, line in enumerate(lines):
        match = re.search(r"\bbra(?:\.uni)?\s+(\$L\w+);", line)
        if match and labels.get(match.group(1), j) < j:
            loops.append((labels[match.group(1)], j))
    return loops


def unlooped_handoff_loads(ptx: str) -> list[str]:
    """Hand-off loads (step counters and exchanged data) that are not re-executed every
    step: those outside every loop that also contains a barrier, i.e. hoisted out of the
    step loop. Must be empty, or a block would spin on a value read once."""
    lines = ptx.splitlines()
    barriers = [i for i, line in enumerate(lines) if "bar.sync" in line]
    loops = [(i, j) for i, j in _loops(lines) if any(i < b < j for b in barriers)]
    return [line.strip() for k, line in enumerate(lines)
            if (DATA_LOAD in line or COUNTER_LOAD in line)
            and not any(i < k < j for i, j in loops)]


def hoisted_polls(ptx: str) -> list[str]:
    """Counters that are read once per step instead of once per poll: for each counter
    address, some load of it must sit in a poll loop (an innermost loop that holds no
    barrier). The compiler may rotate a poll, reading the counter once before the loop and
    again inside it; a counter read only outside (its innermost loop is the step loop, with
    barriers) leaves the poll loop spinning on a register that never changes. Returns the
    first load of each such counter; must be empty."""
    lines = ptx.splitlines()
    loops = _loops(lines)
    first_load, polled = {}, set()
    for k, line in enumerate(lines):
        if COUNTER_LOAD not in line:
            continue
        address = re.search(r"\[([^\]]+)\]", line)
        address = address.group(1) if address else line
        first_load.setdefault(address, line.strip())
        around = [(i, j) for i, j in loops if i < k < j]
        innermost = min(around, key=lambda loop: loop[1] - loop[0], default=None)
        if innermost is not None and not any("bar.sync" in lines[m] for m in range(innermost[0], innermost[1])):
            polled.add(address)
    return [line for address, line in first_load.items() if address not in polled]


def missing_ordered_loads(ptx: str, plan: KernelPlan) -> list[str]:
    """The ordered loads a plan with hand-offs through global memory must use and that its
    PTX lacks: the counters' acquire loads and the data's L2-only loads. A plain ld.global
    in their place could read another SM's stale values from this SM's L1."""
    if plan.shared_exchange:
        return []
    return [kind for kind in (COUNTER_LOAD, DATA_LOAD) if kind not in ptx]


def _sharp_model(config, seed: int = 0):
    """A randomly initialised WaveNet whose samples depend on every weight: the residual,
    skip and output weights are scaled up so that the logits spread (std ~4) instead of
    giving a near-uniform distribution that hides errors in the network."""
    import torch

    from tts.vocoder.wavenet import WaveNet

    torch.manual_seed(seed)
    model = WaveNet(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("dilated", "res", "skip", "out1", "cond_proj")):
                p.mul_(2.0)
        model.out2.weight.mul_(16.0)
        if config.lpc_inputs:  # initialised to zero: give LPCNet's inputs a say in the logits
            model.embedding_signal.weight.normal_()
            model.embedding_prediction.weight.normal_()
    return model


def _tiny_config(lpc_order: int = 0):
    """L=3, R=8, S=16, A=16, dilations 1, 2, 1; with lpc_order, LPCNet's inputs."""
    from tts.vocoder.wavenet import WaveNetConfig

    return WaveNetConfig(n_layers=3, residual_channels=8, skip_channels=16, output_channels=16,
                         max_dilation=2, cond_channels=8, lpc_order=lpc_order, lpc_inputs=lpc_order > 0)


def varying_coefficients(mel, steps: int, order: int, every: int = 8):
    """Per-sample prediction coefficients (B, steps, order) float32 for LPCNet's inputs:
    `lpc_from_mel` of the mel's frames (B, frames, n_mels), each held for `every` samples
    (far fewer than a hop, so that a short test sees them change), frames reused cyclically."""
    from tts.vocoder.lpc import lpc_from_mel

    mel = np.asarray(mel, np.float32)
    a = np.stack([lpc_from_mel(m, order) for m in mel])  # (B, frames, order)
    frame = (np.arange(steps) // every) % a.shape[1]
    return np.ascontiguousarray(a[:, frame])


def _compare(model, kernel: CudaKernel, batch: int, steps: int, chunks=None, seed: int = 1,
             logits: bool = False, sharpen: bool = False) -> str:
    """Kernel vs reference: sampled classes on margin uniforms, in the given chunks, with
    `sharpen` from logits scaled by a random per-sample sharpness in [1, 3], and with
    `logits` also the teacher-forced logits. With LPCNet's inputs, per-sample coefficients
    (`varying_coefficients`) and the carried signal, which must be the reference's exactly.
    '' or a one-line failure."""
    import torch

    g = torch.Generator().manual_seed(seed)
    frames = -(-steps // model.config.hop_length)
    mel = torch.rand(batch, frames, model.config.n_mels, generator=g)
    cond = model.conditioning(mel).detach()[:, :steps].contiguous()
    sharpness = 1 + 2 * torch.rand(batch, steps, generator=g) if sharpen else None
    order = model.signal_order
    lpc = torch.from_numpy(varying_coefficients(torch.rand(batch, 4, model.config.n_mels, generator=g),
                                             steps, order)) if order else None
    expected, uniforms = margin_uniforms(model, cond, torch.rand(batch, steps, generator=g), sharpness, lpc)
    state = kernel.init_state(batch)
    pieces, start = [], 0
    for n in chunks or [steps]:
        got, state = kernel.generate(cond[:, start:start + n].numpy(),
                                     uniforms[:, start:start + n].numpy(), state,
                                     sharpness=None if sharpness is None else
                                     sharpness[:, start:start + n].numpy(),
                                     lpc=None if lpc is None else lpc[:, start:start + n].numpy())
        pieces.append(got)
        start += n
    got = np.concatenate(pieces, axis=1)
    bad = np.argwhere(got != expected.numpy())
    if len(bad):
        b, t = bad[0]
        return f"first mismatch at utterance {b}, step {t}: kernel {got[b, t]}, reference {int(expected[b, t])}"
    if not (state.t == steps).all() or not (state.last_class == got[:, -1]).all():
        return "the returned state does not match the generated samples"
    if order:
        reference_state = model.generate(cond, uniforms, sharpness=sharpness, lpc=lpc)[1]
        if not np.array_equal(state.signal, reference_state.signal.numpy()):
            error = np.abs(state.signal - reference_state.signal.numpy()).max()
            return f"the carried signal differs from the reference's by up to {error:.3g}"
    if logits:
        _, _, reference = model.generate(cond, None, teacher=expected, lpc=lpc, return_logits=True)
        _, _, kernel_logits = kernel.generate(cond.numpy(), None, kernel.init_state(batch),
                                              teacher=expected.numpy(), return_logits=True,
                                              lpc=None if lpc is None else lpc.numpy())
        error = np.abs(kernel_logits - reference.numpy()).max()
        if not error <= LOGITS_ATOL:
            return f"teacher-forced logits differ from the reference by up to {error:.3g}"
    return ""


def self_test_variants(weights) -> list[tuple[CudaKernel, int, int, list[int] | None]]:
    """(kernel, batch, steps, chunks) of every variant the self-test runs in the simulator:
    fused with shared hand-offs and one lane, a split plan's roles in one block (global
    hand-offs, counters, polls), several utterances per block. On a GPU the same variants
    run the code the simulator replaces with Python stand-ins (shuffles, vector, acquire
    and L2-only loads)."""
    return [
        (CudaKernel(weights, topology="fused", exchange="shared", threads=32, max_lanes=1), 1, 48,
         [1, 20, 27]),
        (CudaKernel(weights, plan=_split_roles_in_one_block(weights)), 1, 16, [7, 9]),
        (CudaKernel(weights, topology="fused", threads=32, utterances_per_block=2), 3, 8, None),
    ]


def _compare_both(model, kernel, batch: int, steps: int, chunks) -> str | None:
    """Plain samples with their logits, then sharpened samples, against the reference: the
    first problem, or None."""
    return (_compare(model, kernel, batch, steps, chunks, logits=True)
            or _compare(model, kernel, batch, steps, chunks, sharpen=True))


def _simulator_check() -> int:
    sys.setswitchinterval(5e-5)  # the simulator's scheduler busy-waits; hand threads the GIL sooner
    import torch

    torch.set_num_threads(1)
    for model in (_sharp_model(_tiny_config()), _sharp_model(_tiny_config(lpc_order=16))):
        for kernel, batch, steps, chunks in self_test_variants(model.export_weights()):
            label = f"simulator, {kernel.plan(batch).describe()}, batch {batch}"
            problem = _compare_both(model, kernel, batch, steps, chunks)
            if problem:
                print(f"{label}: {problem}")
                return 1
            print(f"{label}: {steps} samples (plain and sharpened) and logits equal the reference")
    return 0


def _split_roles_in_one_block(weights) -> KernelPlan:
    """A split plan's whole role graph (2 chain groups, the second a tail, and 2 output
    parts, handing off through global memory) played by one block: what the simulator can
    run of the split topology."""
    dims = validate_exported(weights)
    split = KernelPlan.choose(dims, weights["dilations"], 1, topology="split", threads=32)
    return replace(split, fused=True, groups=2, parts=2, tail=True)


def _compile_check() -> int:
    from tts.vocoder.wavenet import WaveNetConfig

    _numba_cuda()
    configs = {"default": WaveNetConfig(), "medium": WaveNetConfig.medium(),
               "default-lpc": WaveNetConfig(lpc_order=16, lpc_inputs=True)}
    variants = []
    for name, c in configs.items():
        dims = validate_exported(_random_weights(c))
        for topology, batch in (("fused", 1), ("split", 1), ("fused", 512)):
            plan = KernelPlan.choose(dims, c.dilations, batch, topology=topology)
            variants.append((f"{name} {topology} batch {batch}", plan))
    problems = ((local_memory_lines, "local memory used"),
                (static_shared_lines, "a static shared array"),
                (unlooped_handoff_loads, "hand-off load hoisted out of the step loop"),
                (hoisted_polls, "counter read once before its poll loop"))
    for label, plan in variants:
        ptx = ptx_for(plan)
        for find, problem in problems:
            lines = find(ptx)
            if lines:
                print(f"PTX for sm_90, {label}: {problem}: {lines[0]}")
                return 1
        missing = missing_ordered_loads(ptx, plan)
        if missing:
            print(f"PTX for sm_90, {label}: hand-offs through global memory without {', '.join(missing)}")
            return 1
    print(f"PTX for sm_90: {len(variants)} variants compile, no local memory, no static shared arrays, "
          f"hand-off loads ordered ({COUNTER_LOAD}, {DATA_LOAD}) and in the step loop, counters re-read on every poll")
    return 0


def _random_weights(config, seed: int = 0) -> dict[str, np.ndarray]:
    import torch

    from tts.vocoder.wavenet import WaveNet

    torch.manual_seed(seed)
    return WaveNet(config).export_weights()


def _gpu_check() -> int:
    import torch

    from tts.vocoder.wavenet import WaveNetConfig

    torch.set_num_threads(1)
    for name, config, topologies, steps in (("default", WaveNetConfig(), ("fused", "split"), 2000),
                                            ("medium", WaveNetConfig.medium(), ("split", "fused"), 600),
                                            ("default-lpc", WaveNetConfig(lpc_order=16, lpc_inputs=True),
                                             ("fused", "split"), 600)):
        model = _sharp_model(config)
        for topology in topologies:
            kernel = CudaKernel(model.export_weights(), topology=topology)
            for batch, chunks in ((1, [steps // 3, steps - steps // 3]), (3, None)):
                label = f"GPU, {name}, {kernel.plan(batch).describe()}, batch {batch}"
                problem = _compare_both(model, kernel, batch, steps, chunks)
                if problem:
                    print(f"{label}: {problem}")
                    return 1
                _, compiled, _ = kernel._prepare(batch)
                spilled = compiled.get_local_mem_per_thread()
                if spilled:
                    print(f"{label}: {spilled} bytes of local memory per thread (register spills)")
                    return 1
                print(f"{label}: {steps} samples and logits equal the reference "
                      f"({compiled.get_regs_per_thread()} registers per thread)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tts.kernels.cuda_checks",
                                     description="Check the persistent CUDA WaveNet kernel.")
    parser.add_argument("--selftest", action="store_true",
                        help="PTX compile check, simulator comparison, and the GPU comparison "
                             "where a GPU is present")
    parser.add_argument("--simulator-check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.simulator_check:
            return _simulator_check()
        if not args.selftest:
            parser.print_help()
            return 2
        if _compile_check():
            return 1
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        done = subprocess.run([sys.executable, "-m", "tts.kernels.cuda_checks", "--simulator-check"], env=env)
        if done.returncode:
            return 1
        if cuda_usable():
            return _gpu_check()
        print("GPU comparison skipped: no usable CUDA GPU")
        return 0
    except Exception as e:  # a one-line verdict, not a traceback
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"selftest failed: {type(e).__name__}: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
