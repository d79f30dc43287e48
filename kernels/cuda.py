"""Persistent fused WaveNet inference on NVIDIA GPUs (numba.cuda), designed for the H200.

One launch generates a whole chunk of samples: weights are loaded on chip once per launch,
the sample loop runs inside the kernel, and nothing returns to the host until the chunk is
done. Conditioning for the chunk is an input (computed on the GPU by the caller); uniforms
come in as in the reference, so the samples are those of `WaveNet.generate`; the state
between chunks is a `KernelState`, copied to and from the host at chunk boundaries.

Why the design looks like this: per sample the network is a strict chain (class -> layer 0
-> ... -> layer L-1 -> out1 -> out2 -> softmax -> class), each link a matrix-vector product
of a few thousand multiply-adds. The FLOPs are nothing (medium: 0.9 M MACs per sample); the
latency of each link is everything. So the kernel minimises the links on the critical path
and the time spent in each.

Roles. A *pipeline* generates one utterance (or, fused, a few in lock step). Its roles:
- chain group g (of G): a run of layers. Per sample: wait for its input x (group 0: sample
  the class and look up the embedding), run its layers (gate and residual products, the
  only work on the critical path), hand x to group g+1, then, off the critical path unless
  it is the last group: its share of the skip sum (one (S, layers*R) product over the gate
  outputs of all its layers) and the pre-activations of the *next* sample,
  W0 x[t+1-d] + b + cond[t+1], which depend only on the past and so leave the chain with
  one product (W1 x) per layer instead of two. A split plan ends with a one-layer *tail*
  group whose skip weights are staged too, so the last skip share, which the outputs wait
  for, never waits on L2.
- output part k (of K): rows [k*AK, (k+1)*AK) of out1 and the matching columns of out2:
  relu(sum of skip shares) -> its hidden slice -> its partial logits.
- the sampler (with chain group 0): sum of partial logits, softmax, inverse-CDF sampling.

Topologies (`KernelPlan`):
- fused: one block plays every role in turn (normally G = K = 1) and hands data through
  shared memory; one block per utterance, or `utterances_per_block` utterances sharing one
  block's weight loads (threadIdx.y picks the utterance). Blocks are independent, so any
  batch size runs. Synchronisation is `syncthreads` only.
- split (nv-wavenet's persistent idea, with layer *groups* to cut the hops): G + K
  co-resident blocks per utterance, one role each; each keeps its critical weights in
  shared memory for the whole launch and hands data over global memory: producer stores,
  `threadfence`, `syncthreads`, thread 0 writes a per-link step counter with an atomic;
  the consumer's thread spins on the counter with `ld.acquire.gpu` loads, fences,
  `syncthreads`, then reads the data with L2-only `ld.global.cg` loads (a stale L1 line
  can never be read). Both loads are inline asm with side effects, so the compiler
  re-issues them every poll and every step (the tests check the PTX for it). Counters only
  grow (step + 1), so no reset or sentinel is needed within a launch. Every link's data is
  single-buffered: each block reads all inputs of step s before it writes anything of step
  s+1, and the ring (group 0 -> ... -> outputs -> group 0) puts every read of step s before
  every write of step s+1. Co-residency is checked with the occupancy API before launch; a
  spin gives up after SPIN_LIMIT polls and the host raises instead of the GPU hanging.
The simulator runs blocks one after another, so a split launch cannot run there. A fused
plan with a split plan's roles (2 groups, the second a tail, 2 parts) and global hand-offs
runs the split code path (hand-offs, counters, polls, cache-hinted loads, per-role staging)
in one block, and that is what the tests check.

Work inside a block. Every product is cut the same way (`_Phase`): `lanes` adjacent threads
share one output row, each summing a strided slice of the inputs, then a shuffle butterfly;
NT/lanes rows at once. The host packs every matrix in exactly the order the threads read it
(`[pass][step/4][thread][4]`), so each thread loads 4 weights with one 16-byte load and a
warp's loads are contiguous: coalesced from global memory, free of bank conflicts in shared
memory, a quarter of the load instructions, 4x the bytes in flight when streaming from L2.
Zero padding makes every size legal. Weights that fit (the chain's W1 and residual
matrices, the tail's skip matrix, the output slices) are staged in shared memory; the rest
(W0, skip, and in fused mode everything that does not fit) stream from L2 through L1.

Expected per-sample latency on an H200 (132 SMs at 1.98 GHz, 227 KB shared memory per
block, 256 threads per block), budget at 64 kHz: 15.6 us. Instruction counts are read off
the PTX; the hand-off latency is an estimate (no GPU was available to measure).
Medium (L=20, R=64, S=256, A=256), batch 1: split, 5 groups of <= 4 layers + a one-layer
tail + 3 output parts = 9 blocks, each staging <= 224 KB of weights:
    chain, per layer: gate 2 rows x 16 MACs (8 LDS.128, 16 LDS) + tanh/sigmoid + 2 shuffle
    levels, ~135 instructions per warp; residual ~55; 8 warps on 4 schedulers, 2 barriers:
    ~450 cycles                                                          20 x 0.23 us = 4.6 us
    hand-offs: 5 group->group, 1 tail->outputs, 1 outputs->sampler; each is membar.gl +
    atomic + a poll's L2 round trip + barrier + ld.cg, ~0.8 us                7 x 0.8 = 5.6 us
    tail skip share, 256 x 64 from shared memory                                     ~0.15 us
    output part: out1 86 x 256 and out2 256 x 86 from shared memory                  ~0.6 us
    sampler (max, exp, sum, scan, count) and the embedding lookup                    ~0.8 us
    total ~11.8 us -> ~85,000 samples/s; at 1.2 us per hop ~14.6 us (~68,000 samples/s).
    Off the critical path, in the ~10 us until its next input, each group streams its skip
    share (256 KB) and next-sample pre-activations (128 KB) from L2: ~4 us.
Default voice (L=12, R=32, S=128, A=128), batch 1: fused, the chain staged (144 KB): chain
    12 x ~0.15 us, then skip, out1, out2 and W0 streamed from L2 (~0.5 MB, ~4 us), sampler
    ~0.8 us: ~7 us -> ~140,000 samples/s. (A split plan, 2 groups + 1 part, would be
    ~5.5 us if hops cost 0.8 us; `topology="split"` runs it, the benchmark should try both.)
Many utterances: fused, weights streamed from L2 through L1. One utterance per block while
all blocks together stream at most L2_STREAM_BUDGET (192 MB, ~3 TB/s at real time) per
step, else 2 or 4 per block sharing each weight load through L1. 100 real-time streams
(1.6 M steps/s): default voice, 100 blocks x 0.7 MB per step (~1.1 TB/s); medium, 50 blocks
of 2 x 3.5 MB (~2.8 TB/s), each step ~2 x 0.9 M multiply-adds at ~32 weights per clock
from L1 (~28 us), inside the 62.5 us a real-time step allows.

Numerics: float32 throughout, sums in a different order than torch's, libdevice expf/tanhf.
Samples equal the reference's except where a uniform falls within rounding distance of a cdf
step; the tests draw uniforms away from steps (`margin_uniforms`) so they can compare
exactly.

LPCNet's inputs (`lpc_order` > 0): the sampler's block (chain group 0) also runs the
predictor and the synthesis filter in the loop. The two extra embedding tables sit next to the
first one in the packed weights; each sample's coefficients are staged in shared memory with
the pre-activations, off the critical path; the signal's last lpc_order samples stay in
shared memory as float64 for the whole launch (a doubled ring, `predict` in cuda_device.py),
from and back to `KernelState.signal`. Per sample every thread of that block computes p[t]
itself, in the reference's order with products that are never fused (`mul.rn.f64`), and the
mu-law classes of s[t-1] and p[t] by binary search over constant bounds: ~16 dependent
float64 multiply-adds and 2 x 8 constant loads, ~0.2 us on the critical path, and no
barrier. After sampling, s[t] = p[t] + decoded e[t]. That arithmetic is the reference's, so
the signal and its classes are exactly the reference's.

Where the code lives: kernels/cuda_plan.py, the plan (`_Phase`, `KernelPlan`, `pack_weights`;
numpy only); kernels/cuda_device.py, the device code (`build_kernel`); this module, the host
side (`CudaKernel`); kernels/cuda_checks.py, the PTX, simulator and GPU checks and
`python -m tts.kernels.cuda_checks --selftest`.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

# The plan and the device code live in their own modules; their names are importable from
# here, the kernel's public module, as well.
from tts.kernels.cuda_device import _SIGNATURE, _numba_cuda, _simulated, build_kernel
from tts.kernels.cuda_plan import (FLAG_STRIDE, H200, L2_STREAM_BUDGET, N_CLASSES,  # noqa: F401
                               VECTOR, WARP, KernelPlan, _Phase, pack_weights)
from tts.kernels.state import KernelState, check_lpc, check_sharpness, check_state
from tts.vocoder.wavenet import validate_exported

LOGITS_ATOL = 1e-3  # float32 sums in another order, logits of magnitude ~10
SPIN_LIMIT = 200_000_000  # polls of one step counter before a block gives up (tens of seconds)
_DEFAULT_SMEM = 48 * 1024  # dynamic shared memory a kernel may use without opting in


def cuda_usable() -> bool:
    """A real CUDA GPU (compute capability >= 7.0) is present and numba.cuda can use it."""
    try:
        cuda = _numba_cuda()
        if _simulated() or not cuda.is_available():
            return False
        return cuda.get_current_device().compute_capability >= (7, 0)
    except Exception:  # no driver, no device, broken install: all mean "not usable"
        return False


# ---- host side -------------------------------------------------------------------------------


def _raise_shared_memory_limit(dispatcher, nbytes: int) -> None:
    """Allow `nbytes` of dynamic shared memory (CUDA's default cap is 48 KB). numba-cuda
    has no public call for this yet (numba-cuda issue #94); this is the driver call its own
    carveout setting makes."""
    if nbytes <= _DEFAULT_SMEM:
        return
    from numba.cuda.cudadrv.driver import binding, driver

    overload = next(iter(dispatcher.overloads.values()))
    cufunc = overload._codelibrary.get_cufunc()
    attr = binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    driver.cuKernelSetAttribute(attr, nbytes, cufunc.handle, cufunc.device.id)


def _array_info(array) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of a host array, a CPU tensor, or a device array."""
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is not None:
        return tuple(interface["shape"]), np.dtype(interface["typestr"])
    host = np.asarray(array)
    return host.shape, host.dtype


class _SharedMemoryOptInError(RuntimeError):
    pass


_KERNELS: dict = {}  # KernelPlan -> compiled kernel; weights are an argument, so shared


def _compiled_kernel(plan: KernelPlan):
    cuda = _numba_cuda()
    if plan not in _KERNELS:
        if plan.simulated:
            kernel = cuda.jit(_SIGNATURE)(build_kernel(plan))
        else:
            threads = plan.threads * plan.utterances_per_block
            kernel = cuda.jit(_SIGNATURE, launch_bounds=(threads,))(build_kernel(plan))
            try:
                _raise_shared_memory_limit(kernel, plan.smem_bytes)
            except Exception as e:  # an internal numba-cuda interface that may move
                raise _SharedMemoryOptInError(f"could not allow {plan.smem_bytes} bytes of "
                                              f"shared memory per block ({e})") from e
        _KERNELS[plan] = kernel
    return _KERNELS[plan]


class CudaKernel:
    """WaveNet generation on an NVIDIA GPU with the persistent fused kernel.

    Same contract as the reference `WaveNet.generate` and the CPU `NumbaKernel`: numpy (or
    CUDA device) arrays in, a `KernelState` between chunks, classes out. Kernel variants are
    compiled on first use per plan (sizes, topology) and kept for the process.

    topology: "auto" (split for batch-1 models too large for one block, else fused),
        "fused" or "split". exchange: "auto", "shared" or "global" (fused plans only;
        "global" runs the split topology's hand-off code in one block). threads: per block.
    plan: a `KernelPlan` to use for every batch size instead of choosing one (for tests and
        tuning; e.g. a fused plan with several groups and parts runs every role of a split
        plan in one block).
    """

    name = "cuda"
    takes_tensors = True  # generate's cond as a torch tensor where it lies, else a numpy array

    def __init__(self, weights: dict[str, np.ndarray], *, topology: str = "auto",
                 exchange: str = "auto", threads: int = 256,
                 utterances_per_block: int | None = None, max_lanes: int = WARP,
                 plan: KernelPlan | None = None):
        self.dims = validate_exported(weights)
        if self.dims.n_classes != N_CLASSES:
            raise ValueError(f"the kernel samples {N_CLASSES} classes, the weights have "
                             f"{self.dims.n_classes}")
        self.weights = {name: np.ascontiguousarray(a) for name, a in weights.items()}
        self.dilations = tuple(int(d) for d in weights["dilations"])
        self.options = dict(topology=topology, exchange=exchange, threads=threads,
                            utterances_per_block=utterances_per_block, max_lanes=max_lanes)
        KernelPlan.choose(self.dims, self.dilations, 1, **self.options)  # reject bad options now
        d = self.dims
        if plan is not None and (plan.n_layers, plan.residual, plan.skip, plan.output,
                                 plan.dilations, plan.lpc_order) != (
                d.n_layers, d.residual_channels, d.skip_channels, d.output_channels,
                self.dilations, d.lpc_order):
            raise ValueError("the plan was made for other model dimensions")
        self._fixed_plan = plan
        self._packed: dict[KernelPlan, object] = {}  # weights on the device, per layout
        self._smem_cap = H200["smem_per_block"]

    @property
    def lpc_order(self) -> int:
        return self.dims.lpc_order

    def init_state(self, batch_size: int) -> KernelState:
        return KernelState.zeros(batch_size, self.dilations, self.dims.residual_channels, self.lpc_order)

    def plan(self, batch_size: int) -> KernelPlan:
        """The plan `generate` uses for this batch size on the current device."""
        cuda = _numba_cuda()
        options = dict(self.options)
        if self._fixed_plan is not None:
            plan = replace(self._fixed_plan, simulated=_simulated())
            if plan.simulated and not plan.fused:
                raise ValueError("the CUDA simulator cannot run a split plan")
            return plan
        if _simulated():
            # The simulator runs blocks one after another: a split plan's blocks would
            # wait for each other forever. exchange="global" runs its code in one block.
            if options["topology"] == "split":
                raise ValueError("the CUDA simulator cannot run a split plan; use "
                                 "topology='fused' (exchange='global' runs the same code)")
            options["topology"] = "fused"
            return KernelPlan.choose(self.dims, self.dilations, batch_size, **options,
                                     simulated=True)
        device = cuda.get_current_device()
        smem_limit = min(device.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, self._smem_cap)
        return KernelPlan.choose(self.dims, self.dilations, batch_size, **options,
                                 sm_count=device.MULTIPROCESSOR_COUNT, smem_limit=smem_limit)

    def _prepare(self, batch_size: int):
        """(plan, compiled kernel, packed weights on the device) for this batch size."""
        cuda = _numba_cuda()
        plan = self.plan(batch_size)
        try:
            kernel = _compiled_kernel(plan)
        except _SharedMemoryOptInError as e:
            if self._smem_cap <= _DEFAULT_SMEM:
                raise
            warnings.warn(f"{e}; using plans within {_DEFAULT_SMEM} bytes")
            self._smem_cap = _DEFAULT_SMEM
            return self._prepare(batch_size)
        if plan not in self._packed:
            self._packed[plan] = cuda.to_device(pack_weights(plan, self.weights))
        return plan, kernel, self._packed[plan]

    @staticmethod
    def _to_device(array, name: str, dtype):
        """A device array for `array` (host, or anything with __cuda_array_interface__: a
        torch CUDA tensor, CuPy; used in place, after the producer's stream is synced)."""
        cuda = _numba_cuda()
        if getattr(array, "__cuda_array_interface__", None) is not None:
            d = cuda.as_cuda_array(array)
            if not d.is_c_contiguous():
                raise ValueError(f"{name} is not C-contiguous")
            return d
        return cuda.to_device(np.ascontiguousarray(np.asarray(array), dtype=dtype))

    def generate(self, cond, uniforms, state: KernelState, *, teacher=None, sharpness=None, lpc=None,
                 return_logits: bool = False):
        """Generate one chunk of samples for a batch of utterances.

        cond (B, T, L, 2R) float32, host or device: the chunk's `export_conditioning` slices.
        uniforms (B, T) float32 in [0, 1): the random numbers for sampling.
        state: from `init_state` or the previous chunk; not modified.
        teacher (B, T) int: teacher forcing (then uniforms must be None).
        sharpness (B, T) float32 > 0, host: samples drawn from softmax(sharpness * logits);
            None: from softmax(logits).
        lpc (B, T, order) float32, host: with LPCNet's inputs, each sample's prediction
            coefficients (the predictor and the synthesis filter run in the loop); None without.

        Returns (classes (B, T) int32, new state), plus logits (B, T, 256) float32 (before
        sharpening) when return_logits. As from `NumbaKernel`, the classes are the
        excitation's; the signal the loop made from them is only the state's (its last
        `lpc_order` samples, for the next chunk's predictor): the caller's synthesis filter
        (`model_to_signal`) turns the classes into audio.
        """
        L, R = self.dims.n_layers, self.dims.residual_channels
        shape, dtype = _array_info(cond)
        if len(shape) != 4 or shape[2:] != (L, 2 * R):
            raise ValueError(f"cond has shape {shape}, expected (B, T, L, 2R) = (B, T, {L}, {2 * R})")
        if dtype != np.float32:
            raise ValueError(f"cond has dtype {dtype}, expected float32")
        B, T = shape[:2]
        if (uniforms is None) == (teacher is None):
            raise ValueError("pass exactly one of uniforms (sampling) and teacher (teacher forcing)")
        if teacher is None:
            shape, dtype = _array_info(uniforms)
            if shape != (B, T):
                raise ValueError(f"uniforms has shape {shape}, expected (B, T) = ({B}, {T})")
            on_device = getattr(uniforms, "__cuda_array_interface__", None) is not None
            if dtype != np.float32 and (on_device or not np.issubdtype(dtype, np.floating)):
                raise ValueError(f"uniforms has dtype {dtype}, expected float32")
        else:
            teacher_host = np.asarray(teacher)
            if teacher_host.shape != (B, T):
                raise ValueError(f"teacher has shape {teacher_host.shape}, expected (B, T) = ({B}, {T})")
            if teacher_host.size and (teacher_host.min() < 0 or teacher_host.max() >= N_CLASSES):
                raise ValueError(f"teacher classes must lie in [0, {N_CLASSES})")
        sharpness = check_sharpness(sharpness, B, T, teacher is not None)
        lpc = check_lpc(lpc, B, T, self.lpc_order)
        check_state(state, B, self.dilations, self.dims.residual_channels, N_CLASSES, self.lpc_order)
        cuda = _numba_cuda()
        if not _simulated() and not cuda_usable():
            raise RuntimeError("the CUDA kernel needs an NVIDIA GPU with compute capability >= 7.0 "
                               "and a working driver; none is usable here")
        if T == 0:
            empty = np.empty((B, 0), np.int32)
            new = state.copy()
            return (empty, new, np.empty((B, 0, N_CLASSES), np.float32)) if return_logits else (empty, new)

        plan, kernel, wpk = self._prepare(B)
        cond_d = self._to_device(cond, "cond", np.float32)
        if teacher is None:
            uniforms_d = self._to_device(uniforms, "uniforms", np.float32)
            teacher_d = cuda.to_device(np.zeros((B, 0), np.int32))
        else:
            uniforms_d = cuda.to_device(np.zeros((B, T), np.float32))
            teacher_d = cuda.to_device(np.ascontiguousarray(teacher_host, dtype=np.int32))
        sharpness_d = cuda.to_device(sharpness)
        lpc_d = cuda.to_device(lpc)
        history = cuda.to_device(np.ascontiguousarray(state.history, dtype=np.float32))
        signal = cuda.to_device(np.ascontiguousarray(state.signal, dtype=np.float64))
        last_class = cuda.to_device(state.last_class.astype(np.int32))
        tpos = cuda.to_device(state.t.astype(np.int64))
        classes = cuda.device_array((B, T), np.int32)
        logits = cuda.device_array((B, T if return_logits else 0, N_CLASSES), np.float32)
        pipelines = -(-B // plan.utterances_per_block)
        xchg = cuda.device_array(max(1, B * plan.exchange_layout["total"]), np.float32)
        flags = cuda.to_device(np.zeros(max(1, B * plan.flags_per_pipeline), np.int32))
        status = cuda.to_device(np.zeros(B * plan.blocks_per_pipeline, np.int32))
        grid = (plan.blocks_per_pipeline, pipelines)
        if not plan.fused and not plan.simulated:
            capacity = next(iter(kernel.overloads.values())).max_cooperative_grid_blocks(
                plan.threads, plan.smem_bytes)
            if grid[0] * grid[1] > capacity:
                raise RuntimeError(f"the split kernel needs {grid[0] * grid[1]} blocks resident at "
                                   f"once and the GPU holds {capacity}; use topology='fused'")
        kernel[grid, (plan.threads, plan.utterances_per_block), 0, plan.smem_bytes](
            wpk, cond_d, uniforms_d, sharpness_d, teacher_d, lpc_d, history, signal, last_class, tpos,
            classes, logits, xchg, flags, status, T, SPIN_LIMIT)
        out = classes.copy_to_host()
        if status.copy_to_host().any():
            raise RuntimeError("a block of the split CUDA kernel timed out waiting for another: "
                               "the GPU did not run all blocks at once (is it shared with another "
                               "persistent kernel?)")
        new = KernelState(history.copy_to_host(), out[:, -1].astype(np.int32),
                          state.t.astype(np.int64) + T, signal.copy_to_host())
        if return_logits:
            return out, new, logits.copy_to_host()
        return out, new
