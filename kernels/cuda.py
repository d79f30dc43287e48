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
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import subprocess
import sys
import warnings
from dataclasses import dataclass, replace
from functools import cached_property
from types import SimpleNamespace

import numpy as np

from kernels.state import KernelState
from vocoder.wavenet import validate_exported

N_CLASSES = 256
WARP = 32
VECTOR = 4  # float32 weights per load: 16 bytes, LDG.128 / LDS.128
FLAG_STRIDE = 32  # int32s between step counters: one 128-byte line each
LOGITS_ATOL = 1e-3  # float32 sums in another order, logits of magnitude ~10
SPIN_LIMIT = 200_000_000  # polls of one step counter before a block gives up (tens of seconds)
H200 = {"sm_count": 132, "smem_per_block": 232448}  # used where no device can be asked
# Weights all blocks together may stream from L2 per step: at 16,000 steps/s (real time)
# 192 MB is ~3 TB/s, about half of what the H200's L2 delivers.
L2_STREAM_BUDGET = 192 * 2**20
_DEFAULT_SMEM = 48 * 1024  # dynamic shared memory a kernel may use without opting in
STATIC_SMEM = 1024  # bytes kept for the kernel's static shared memory (ring rows, a flag)
_SIGNATURE = ("void(float32[::1], float32[:, :, :, ::1], float32[:, ::1], int32[:, ::1], "
              "float32[:, :, ::1], int32[::1], int64[::1], int32[:, ::1], float32[:, :, ::1], "
              "float32[::1], int32[::1], int32[::1], int64, int64)")
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_NEG_INF = np.float32(-np.inf)

cuda = None  # numba.cuda, imported on first use: the GPU packages are an optional extra


def _numba_cuda():
    global cuda
    if cuda is None:
        if importlib.util.find_spec("numba_cuda") is None:
            raise ImportError("the CUDA kernel needs numba-cuda: pip install 'tts-engine[gpu]'")
        from numba import cuda as numba_cuda

        cuda = numba_cuda
    return cuda


def _simulated() -> bool:
    import numba

    return bool(numba.config.ENABLE_CUDASIM)


def cuda_usable() -> bool:
    """A real CUDA GPU (compute capability >= 7.0) is present and numba.cuda can use it."""
    try:
        _numba_cuda()
        if _simulated() or not cuda.is_available():
            return False
        return cuda.get_current_device().compute_capability >= (7, 0)
    except Exception:  # no driver, no device, broken install: all mean "not usable"
        return False


# ---- the plan: topology, thread mapping, weight and shared-memory layouts ---------------


@dataclass(frozen=True)
class _Phase:
    """How NT threads share one product y = W v with W (rows, inputs): `lanes` adjacent
    threads per row, each summing inputs lane, lane + lanes, ...; NT // lanes rows per pass.
    Each thread reads its weights VECTOR at a time (one 16-byte load), so `steps` is rounded
    up to whole vectors."""

    rows: int
    inputs: int
    threads: int
    max_lanes: int = WARP

    @property
    def lanes(self) -> int:
        lanes = 1
        while (lanes < self.max_lanes and 2 * lanes * self.rows <= self.threads
               and lanes < self.inputs):
            lanes *= 2
        return lanes

    @property
    def per_pass(self) -> int:
        return self.threads // self.lanes

    @property
    def passes(self) -> int:
        return -(-self.rows // self.per_pass)

    @property
    def steps(self) -> int:
        return -(-self.inputs // (self.lanes * VECTOR)) * VECTOR

    @property
    def padded_inputs(self) -> int:
        return self.lanes * self.steps

    @property
    def size(self) -> int:
        return self.passes * self.steps * self.threads

    def pack(self, w: np.ndarray) -> np.ndarray:
        """W (rows, inputs) -> (passes, steps / VECTOR, threads, VECTOR): element
        [p, q, tid, i] is the weight thread tid multiplies at step VECTOR * q + i of pass p
        (zero where the row or input is padding). A warp's vector loads are contiguous."""
        out = np.zeros((self.passes, self.steps // VECTOR, self.threads, VECTOR), np.float32)
        tid = np.arange(self.threads)
        for p in range(self.passes):
            row = p * self.per_pass + tid // self.lanes
            for j in range(self.steps):
                col = tid % self.lanes + j * self.lanes
                ok = (row < self.rows) & (col < self.inputs)
                out[p, j // VECTOR, ok, j % VECTOR] = w[row[ok], col[ok]]
        return out

    def emulate(self, packed: np.ndarray, v: np.ndarray) -> np.ndarray:
        """What the threads compute from `pack(W)` and v: W v, for testing the layout."""
        vp = np.zeros(self.padded_inputs + self.lanes, np.float32)
        vp[:self.inputs] = v
        tid = np.arange(self.threads)
        y = np.zeros(self.passes * self.per_pass, np.float32)
        packed = packed.transpose(0, 1, 3, 2).reshape(self.passes, self.steps, self.threads)
        for p in range(self.passes):
            cols = tid[None, :] % self.lanes + np.arange(self.steps)[:, None] * self.lanes
            partial = (packed[p] * vp[cols]).sum(axis=0)  # (threads,)
            y[p * self.per_pass:(p + 1) * self.per_pass] = partial.reshape(-1, self.lanes).sum(1)
        return y[:self.rows]


def _array_info(array) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of a host array, a CPU tensor, or a device array."""
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is not None:
        return tuple(interface["shape"]), np.dtype(interface["typestr"])
    host = np.asarray(array)
    return host.shape, host.dtype


def _align(n: int) -> int:
    return -(-n // 32) * 32


@dataclass(frozen=True)
class KernelPlan:
    """Everything a compiled kernel variant depends on; the compile cache is keyed by it."""

    n_layers: int
    residual: int
    skip: int
    output: int
    dilations: tuple[int, ...]
    threads: int = 256
    groups: int = 1  # G chain groups per pipeline
    parts: int = 1  # K output parts per pipeline
    fused: bool = True  # one block plays all G + K roles in turn; else one block per role
    shared_exchange: bool = True  # fused only: hand-offs through shared memory
    utterances_per_block: int = 1  # fused with shared exchange only
    stage_chain: bool = False  # W1 and residual weights in shared memory
    stage_output: bool = False  # out1/out2 slices in shared memory
    tail: bool = False  # split only: the last chain group is layer L-1 alone, skip weights staged
    max_lanes: int = WARP  # cap on threads per row (1 makes the simulator fast)
    simulated: bool = False

    def __post_init__(self):
        nt = self.threads
        if nt < WARP or nt & (nt - 1) or nt * self.utterances_per_block > 1024:
            raise ValueError(f"threads must be a power of 2 in [32, 1024 / utterances_per_block], "
                             f"got {nt}")
        if not self.fused and self.shared_exchange:
            raise ValueError("a split plan hands data over global memory")
        if self.utterances_per_block > 1 and not self.shared_exchange:
            raise ValueError("several utterances per block need the shared-memory exchange")
        if self.groups < 1 or self.parts < 1 or self.groups > self.n_layers or self.parts > self.output:
            raise ValueError(f"need 1 <= groups <= n_layers and 1 <= parts <= output channels, "
                             f"got {self.groups} and {self.parts}")
        if self.tail and self.groups < 2:
            raise ValueError("a tail group needs at least 2 chain groups")
        if any(first >= end for first, end in self.group_layers):
            raise ValueError(f"{self.groups} groups of {self.layers_per_group} layers leave a "
                             f"group empty")
        if 4 * (1 + self.ring_rows) > STATIC_SMEM:
            raise ValueError("too many layers per block for the static shared memory reserve")

    # -- sizes
    @property
    def layers_per_group(self) -> int:
        """LG: layers of every chain group but the tail (the last may have fewer)."""
        if self.tail:
            return -(-(self.n_layers - 1) // (self.groups - 1))
        return -(-self.n_layers // self.groups)

    @property
    def group_layers(self) -> tuple[tuple[int, int], ...]:
        """(first layer, end) of each chain group. Group g's layer first + ll sits in weight
        slot g * LG + ll of the packed gate and residual segments."""
        LG, L = self.layers_per_group, self.n_layers
        if self.tail:
            body = [(g * LG, min((g + 1) * LG, L - 1)) for g in range(self.groups - 1)]
            return tuple(body + [(L - 1, L)])
        return tuple((g * LG, min((g + 1) * LG, L)) for g in range(self.groups))

    @property
    def rows_per_part(self) -> int:
        return -(-self.output // self.parts)

    @property
    def blocks_per_pipeline(self) -> int:
        return 1 if self.fused else self.groups + self.parts

    @property
    def ring_rows(self) -> int:
        """Per utterance of a block and layer it runs: the step's ring row (static smem)."""
        return self.utterances_per_block * (self.groups if self.fused else 1) * self.layers_per_group

    @property
    def roles_per_block(self) -> int:
        return self.groups + self.parts if self.fused else 1

    @cached_property
    def phases(self) -> dict[str, _Phase]:
        R, S, LG, AK, nt, ml = (self.residual, self.skip, self.layers_per_group,
                                self.rows_per_part, self.threads, self.max_lanes)
        return {
            "gate": _Phase(R, R, nt, ml),  # row r: tanh row r and sigmoid row R + r of W1
            "res": _Phase(R, R, nt, ml),
            "pre": _Phase(LG * 2 * R, R, nt, ml),  # W0 of every layer of the group
            "skip": _Phase(S, LG * R, nt, ml),  # skip weights of the group, side by side
            "tail_skip": _Phase(S, R, nt, ml),  # the tail group's one layer
            "out1": _Phase(AK, S, nt, ml),
            "out2": _Phase(N_CLASSES, AK, nt, ml),
        }

    @cached_property
    def weight_layout(self) -> dict[str, int]:
        """Offsets (float32s) of every segment of the packed weight buffer, and its size."""
        ph, G, K, LG = self.phases, self.groups, self.parts, self.layers_per_group
        R, S, L = self.residual, self.skip, self.n_layers
        sizes = {
            "embedding": N_CLASSES * R, "dilated_b": L * 2 * R, "res_b": L * R, "skip_b": G * S,
            "out1_b": K * self.rows_per_part, "out2_b": N_CLASSES,
            "gate": G * LG * 2 * ph["gate"].size, "res": G * LG * ph["res"].size,
            "pre": G * ph["pre"].size, "skip": G * ph["skip"].size,
            "out1": K * ph["out1"].size, "out2": K * ph["out2"].size,
            "tail_skip": ph["tail_skip"].size if self.tail else 0,
        }
        layout, at = {}, 0
        for name, size in sizes.items():
            layout[name] = at
            at += _align(size)
        layout["total"] = at
        return layout

    @cached_property
    def exchange_layout(self) -> dict[str, int]:
        """Offsets (float32s) within one pipeline's hand-off area: x between chain groups,
        skip shares, partial logits."""
        G, K, R, S = self.groups, self.parts, self.residual, self.skip
        x = 0
        skip = _align(G * R)
        logits = skip + _align(G * S)
        return {"x": x, "skip": skip, "logits": logits, "total": logits + _align(K * N_CLASSES)}

    @property
    def flags_per_pipeline(self) -> int:
        return (2 * self.groups + self.parts) * FLAG_STRIDE

    @cached_property
    def smem_layout(self) -> dict[str, int]:
        """Offsets (float32s) in dynamic shared memory. Staged weights first (a split
        block stages either chain or output weights, so those share offset 0), then the
        shuffle scratch, then one area of vectors per utterance of the block."""
        ph, LG, R, S, AK = self.phases, self.layers_per_group, self.residual, self.skip, self.rows_per_part
        gate_layer, res_layer = 2 * ph["gate"].size, ph["res"].size
        G, K = self.groups, self.parts
        counts = [end - first for first, end in self.group_layers]
        m = {}
        # Staged weights of each role: chain group g stages its layers' gate then residual
        # matrices (the tail also its skip matrix), output part k its out1 then out2 slice.
        # A split block plays one role, so all start at 0; a fused block plays all in turn.
        chain = [0] * G
        if self.stage_chain:
            chain = [_align(c * (gate_layer + res_layer)) for c in counts]
            if self.tail:
                chain[-1] = _align(gate_layer + res_layer + ph["tail_skip"].size)
        out = _align(ph["out1"].size + ph["out2"].size) if self.stage_output else 0
        if self.fused:
            chain_at = [sum(chain[:g]) for g in range(G)]
            out_at = [sum(chain) + k * out for k in range(K)]
            at = sum(chain) + K * out
        else:
            chain_at, out_at = [0] * G, [0] * K
            at = max(max(chain), out)
        m["stage_gate"] = tuple(chain_at)
        m["stage_res"] = tuple(a + c * gate_layer for a, c in zip(chain_at, counts))
        m["stage_tail_skip"] = chain_at[-1] + gate_layer + res_layer
        m["stage_out1"] = tuple(out_at)
        m["stage_out2"] = tuple(a + ph["out1"].size for a in out_at)
        m["scratch"] = _align(at)  # the simulator's stand-in for shuffles
        at = m["scratch"] + (_align(self.threads * self.utterances_per_block) if self.simulated else 0)
        m["utterances"] = at
        vectors = {
            "x": max(R, ph["gate"].padded_inputs),
            "past": LG * R + ph["pre"].padded_inputs,
            "pre": (G if self.fused else 1) * LG * 2 * R,  # kept from one step to the next
            "z": max(LG * R + ph["res"].padded_inputs, ph["skip"].padded_inputs),
            "skip": max(S, ph["out1"].padded_inputs),
            "hidden": max(AK, ph["out2"].padded_inputs),
            "logits": N_CLASSES, "cdf": N_CLASSES, "warps": WARP,
            "exchange": self.exchange_layout["total"] if self.shared_exchange else 0,
        }
        rel = 0
        for name, size in vectors.items():
            m[name] = rel
            rel += _align(size)
        m["per_utterance"] = rel
        m["total"] = at + rel * self.utterances_per_block
        return m

    @property
    def smem_bytes(self) -> int:
        return 4 * self.smem_layout["total"]

    def describe(self) -> str:
        """One line for logs and benchmark tables."""
        roles = f"{self.groups}+{self.parts}" + (" (tail)" if self.tail else "")
        if self.fused:
            kind = "fused" + (f" {roles} roles" if self.roles_per_block > 2 else "")
            kind += f" x{self.utterances_per_block}" if self.utterances_per_block > 1 else ""
            kind += ", global hand-offs" if not self.shared_exchange else ""
        else:
            kind = f"split {roles} blocks"
        staged = [name for name, on in (("chain", self.stage_chain), ("output", self.stage_output)) if on]
        return (f"{kind}, {self.threads} threads, {self.smem_bytes // 1024} KB shared"
                + (f" ({' and '.join(staged)} staged)" if staged else ""))

    # -- choosing a plan
    @classmethod
    def choose(cls, dims, dilations, batch: int, *, topology: str = "auto", threads: int = 256,
               exchange: str = "auto", utterances_per_block: int | None = None,
               sm_count: int = H200["sm_count"], smem_limit: int = H200["smem_per_block"],
               max_lanes: int = WARP, simulated: bool = False) -> "KernelPlan":
        """The plan for a batch: split (a few co-resident blocks per utterance, critical
        weights in shared memory) when the chain's weights do not fit one block and the
        whole batch's blocks fit the GPU at once; otherwise fused."""
        if topology not in ("auto", "fused", "split"):
            raise ValueError(f"topology must be 'auto', 'fused' or 'split', got {topology!r}")
        if exchange not in ("auto", "shared", "global"):
            raise ValueError(f"exchange must be 'auto', 'shared' or 'global', got {exchange!r}")
        base = dict(n_layers=dims.n_layers, residual=dims.residual_channels,
                    skip=dims.skip_channels, output=dims.output_channels,
                    dilations=tuple(int(d) for d in dilations), threads=threads,
                    max_lanes=max_lanes, simulated=simulated)
        budget = (smem_limit - STATIC_SMEM) // 4  # float32s of dynamic shared memory

        def fits(plan):
            return plan.smem_layout["total"] <= budget

        def split_plan():
            # The fewest groups, then parts, that fit; with a tail group where there is one
            # (its skip share is then computed from shared memory, off the L2 latency).
            for tail in (True, False):
                for groups in range(2 if tail else 1, dims.n_layers + 1):
                    for parts in range(1, dims.output_channels + 1):
                        try:
                            plan = cls(**base, groups=groups, parts=parts, fused=False,
                                       shared_exchange=False, stage_chain=True,
                                       stage_output=True, tail=tail)
                        except ValueError:  # a group would be empty
                            break
                        if fits(plan):
                            return plan
                        if -(-dims.output_channels // parts) == 1:
                            break
            return None

        staged = cls(**base, stage_chain=True)
        want_split = topology == "split" or (topology == "auto" and not fits(staged)
                                             and exchange != "shared")
        if want_split:
            plan = split_plan()
            if plan is not None and (topology == "split" or batch * plan.blocks_per_pipeline <= sm_count):
                return plan
            if topology == "split":
                raise ValueError("no split plan fits the shared memory of one block")
        shared = exchange != "global"
        if utterances_per_block is None:
            # One utterance per block gives the lowest latency; several share each weight
            # load through L1, once one-per-block would stream more weights from L2 per
            # step than L2_STREAM_BUDGET or need more blocks than fit at once.
            weight_bytes = 4 * staged.weight_layout["total"]
            utterances_per_block = 1
            while utterances_per_block < 4 and (
                    -(-batch // utterances_per_block) * weight_bytes > L2_STREAM_BUDGET
                    or -(-batch // utterances_per_block) > 2 * sm_count):
                utterances_per_block *= 2
        upb = max(1, min(utterances_per_block, 1024 // threads))
        if not shared:
            upb = 1
        # Staging pays off when each block has an SM to itself.
        stage = -(-batch // upb) <= sm_count
        for stage_chain, stage_output in ((stage, stage), (stage, False), (False, False)):
            plan = cls(**base, shared_exchange=shared, utterances_per_block=upb,
                       stage_chain=stage_chain, stage_output=stage_output)
            if fits(plan):
                return plan
        raise ValueError(f"the kernel's vectors alone need {plan.smem_bytes} bytes of shared "
                         f"memory, more than the {smem_limit} a block may use")


def pack_weights(plan: KernelPlan, w: dict[str, np.ndarray]) -> np.ndarray:
    """The exported weights in the thread order of `plan`: one float32 buffer laid out as
    `plan.weight_layout`. Biases that the kernel adds once are pre-summed (skip)."""
    ph, lay = plan.phases, plan.weight_layout
    L, R, S, A = plan.n_layers, plan.residual, plan.skip, plan.output
    G, LG, K, AK = plan.groups, plan.layers_per_group, plan.parts, plan.rows_per_part
    buf = np.zeros(lay["total"], np.float32)

    def put(name, arr):
        flat = np.ascontiguousarray(arr, dtype=np.float32).ravel()
        buf[lay[name]:lay[name] + flat.size] = flat

    put("embedding", w["embedding"])
    put("dilated_b", w["dilated_b"])
    put("res_b", w["res_b"])
    put("out2_b", w["out2_b"])
    out1_b = np.zeros(K * AK, np.float32)
    out1_b[:A] = w["out1_b"]
    put("out1_b", out1_b)
    gate, res = [], []
    pre, skip, skip_b = [], [], []
    for g, (first, end) in enumerate(plan.group_layers):
        layers = range(first, end)
        w0 = np.zeros((LG * 2 * R, R), np.float32)
        ws = np.zeros((S, LG * R), np.float32)
        bias = np.zeros(S, np.float32)
        for ll, l in enumerate(layers):
            w0[ll * 2 * R:(ll + 1) * 2 * R] = w["dilated_w"][l, 0]
            ws[:, ll * R:(ll + 1) * R] = w["skip_w"][l]
            bias += w["skip_b"][l]
        pre.append(ph["pre"].pack(w0))
        skip.append(ph["skip"].pack(ws))
        skip_b.append(bias)
        for ll in range(LG):
            l = first + ll
            if l < end:
                w1 = w["dilated_w"][l, 1]
                gate.append(np.stack([ph["gate"].pack(w1[:R]), ph["gate"].pack(w1[R:])], axis=1))
                res.append(ph["res"].pack(w["res_w"][l]))
            else:  # slots past a group's last layer: never run
                zero = np.zeros((R, R), np.float32)
                gate.append(np.stack([ph["gate"].pack(zero)] * 2, axis=1))
                res.append(ph["res"].pack(zero))
    put("gate", np.stack(gate))
    put("res", np.stack(res))
    put("pre", np.stack(pre))
    put("skip", np.stack(skip))
    put("skip_b", np.stack(skip_b))
    out1 = np.zeros((K * AK, S), np.float32)
    out1[:A] = w["out1_w"]
    out2 = np.zeros((N_CLASSES, K * AK), np.float32)
    out2[:, :A] = w["out2_w"]
    put("out1", np.stack([ph["out1"].pack(out1[k * AK:(k + 1) * AK]) for k in range(K)]))
    put("out2", np.stack([ph["out2"].pack(out2[:, k * AK:(k + 1) * AK]) for k in range(K)]))
    if plan.tail:
        put("tail_skip", ph["tail_skip"].pack(w["skip_w"][L - 1]))
    return buf


# ---- device code ---------------------------------------------------------------------------


def _device_function():
    """Decorator for the functions the kernel calls: inlined on a GPU (they sit in the
    innermost loops), plain Python functions in the simulator."""
    if _simulated():
        return cuda.jit(device=True)
    return cuda.jit(device=True, forceinline=True)


def _ordered_load(instruction: str):
    """A 32-bit global load that the compiler keeps where it is written: inline asm with
    side effects and a memory clobber. (numba's `cuda.ldcg`/`cuda.ldcv` emit asm without
    either, and LLVM hoists them out of the step loop: a spin on a counter read once.)"""
    from llvmlite import ir
    from numba.cuda import cgutils
    from numba.cuda.extending import intrinsic

    @intrinsic
    def load(typingctx, array, index):
        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            ary = context.make_array(array_type)(context, builder, value=args[0])
            pointer = cgutils.get_item_pointer(context, builder, array_type, ary, [args[1]],
                                               wraparound=False)
            value_type = context.get_value_type(array_type.dtype)
            asm = ir.InlineAsm(ir.FunctionType(value_type, [value_type.as_pointer()]),
                               f"{instruction}.b32 $0, [$1];", "=r,l,~{memory}",
                               side_effect=True)
            return builder.call(asm, [pointer])

        return array.dtype(array, index), codegen

    return load


def _vector_load():
    """load4(array, i) -> (array[i], ..., array[i + 3]) as one 16-byte load (i a multiple
    of 4; the packed layouts and staging offsets keep it so)."""
    from llvmlite import ir
    from numba.cuda import cgutils, types
    from numba.cuda.extending import intrinsic

    @intrinsic
    def load4(typingctx, array, index):
        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            ary = context.make_array(array_type)(context, builder, value=args[0])
            pointer = cgutils.get_item_pointer(context, builder, array_type, ary, [args[1]],
                                               wraparound=False)
            element = context.get_value_type(array_type.dtype)
            vector = builder.load(builder.bitcast(pointer, ir.VectorType(element, VECTOR).as_pointer()),
                                  align=4 * VECTOR)
            values = [builder.extract_element(vector, ir.Constant(ir.IntType(32), i))
                      for i in range(VECTOR)]
            return context.make_tuple(builder, signature.return_type, values)

        return types.UniTuple(array.dtype, VECTOR)(array, index), codegen

    return load4


def _warp_primitives(simulated: bool):
    """Warp-level loads and reductions. On a GPU: cache-hinted loads and shuffles. The
    simulator has neither, so there they go through a scratch area in shared memory with a
    barrier on each side; every caller reaches them with the whole block, as shuffles need
    whole warps anyway."""
    jit = _device_function()
    full = 0xFFFFFFFF

    if simulated:
        @jit
        def load4(a, i):
            return a[i], a[i + 1], a[i + 2], a[i + 3]

        @jit
        def load_l2(a, i):
            return a[i]

        @jit
        def load_volatile(a, i):
            return a[i]

        @jit
        def group_sum(sm, scratch, ftid, v, width):
            if width == 1:
                return v
            sm[scratch + ftid] = v
            cuda.syncthreads()
            first = ftid - ftid % width
            total = sm[scratch + first]
            for i in range(1, width):
                total += sm[scratch + first + i]
            cuda.syncthreads()
            return total

        @jit
        def warp_max(sm, scratch, ftid, v):
            sm[scratch + ftid] = v
            cuda.syncthreads()
            first = ftid - ftid % WARP
            best = sm[scratch + first]
            for i in range(1, WARP):
                best = max(best, sm[scratch + first + i])
            cuda.syncthreads()
            return best

        @jit
        def warp_scan(sm, scratch, ftid, v):
            """Inclusive and exclusive prefix sums of v over the lanes of the warp."""
            sm[scratch + ftid] = v
            cuda.syncthreads()
            first = ftid - ftid % WARP
            exclusive = _F0
            for i in range(first, ftid):
                exclusive += sm[scratch + i]
            cuda.syncthreads()
            return exclusive + v, exclusive
    else:
        load4 = _vector_load()
        load_l2 = _ordered_load("ld.global.cg")  # L2 only: another SM's stores, never a stale L1 line
        load_volatile = _ordered_load("ld.acquire.gpu.global")  # a step counter, re-read per poll

        @jit
        def group_sum(sm, scratch, ftid, v, width):
            offset = width // 2
            while offset > 0:
                v += cuda.shfl_xor_sync(full, v, offset)
                offset //= 2
            return v

        @jit
        def warp_max(sm, scratch, ftid, v):
            for i in range(5):
                v = max(v, cuda.shfl_xor_sync(full, v, 16 >> i))
            return v

        @jit
        def warp_scan(sm, scratch, ftid, v):
            lane = ftid % WARP
            inclusive = v
            for i in range(5):
                other = cuda.shfl_up_sync(full, inclusive, 1 << i)
                if lane >= (1 << i):
                    inclusive += other
            exclusive = cuda.shfl_up_sync(full, inclusive, 1)
            if lane == 0:
                exclusive = _F0
            return inclusive, exclusive

    return load4, load_l2, load_volatile, group_sum, warp_max, warp_scan


def _phase_dot(phase: _Phase, load4):
    """Device function: this thread's partial sum of one row of a packed product, from
    weights at w[wbase + VECTOR * NT * q ...] (wbase already includes VECTOR * tid) and
    inputs v[vbase + lanes * j] (vbase already includes the lane)."""
    quads, lanes, nt = phase.steps // VECTOR, phase.lanes, phase.threads
    w_stride, v_stride = np.uint64(VECTOR * nt), np.uint64(lanes)

    @_device_function()
    def dot(w, wbase, v, vbase):
        # Unsigned indices: numba adds a negative-index wrap-around to every signed one.
        wb, vb = np.uint64(wbase), np.uint64(vbase)
        acc = _F0
        for q in range(quads):
            w0, w1, w2, w3 = load4(w, wb)
            acc += w0 * v[vb]
            acc += w1 * v[vb + v_stride]
            acc += w2 * v[vb + np.uint64(2) * v_stride]
            acc += w3 * v[vb + np.uint64(3) * v_stride]
            wb += w_stride
            vb += np.uint64(VECTOR) * v_stride
        return acc

    return dot


def build_kernel(plan: KernelPlan):
    """The Python function of the kernel for `plan` (compile with `cuda.jit(_SIGNATURE)`,
    or `cuda.compile_ptx`). Every size and offset is a compile-time constant: numba folds
    closure ints into the code, so loops have constant trip counts and unroll."""
    _numba_cuda()
    from numba import float32, int32

    NT, UPB = plan.threads, plan.utterances_per_block
    L, R, S, NC = plan.n_layers, plan.residual, plan.skip, N_CLASSES
    G, LG, K, AK = plan.groups, plan.layers_per_group, plan.parts, plan.rows_per_part
    R2, NBLK = 2 * R, plan.blocks_per_pipeline
    FUSED, SHARED_X = plan.fused, plan.shared_exchange
    STAGE_CHAIN, STAGE_OUT, TAIL = plan.stage_chain, plan.stage_output, plan.tail
    DIL = np.array(plan.dilations, np.int64)  # constant arrays: numba puts them in .const
    OFF = KernelState.offsets(plan.dilations)
    FIRST = np.array([first for first, _ in plan.group_layers], np.int64)  # per chain group
    END = np.array([end for _, end in plan.group_layers], np.int64)
    ph = plan.phases
    # Per product: threads per row, rows per pass, passes, multiply-adds per thread, size.
    GATE_LN, GATE_PP, GATE_NP, GATE_ST = (ph["gate"].lanes, ph["gate"].per_pass,
                                          ph["gate"].passes, ph["gate"].steps)
    RES_LN, RES_PP, RES_NP, RES_ST = (ph["res"].lanes, ph["res"].per_pass,
                                      ph["res"].passes, ph["res"].steps)
    PRE_LN, PRE_PP, PRE_NP, PRE_ST, PRE_SIZE = (ph["pre"].lanes, ph["pre"].per_pass,
                                                ph["pre"].passes, ph["pre"].steps, ph["pre"].size)
    SKIP_LN, SKIP_PP, SKIP_NP, SKIP_ST, SKIP_SIZE = (ph["skip"].lanes, ph["skip"].per_pass,
                                                     ph["skip"].passes, ph["skip"].steps,
                                                     ph["skip"].size)
    O1_LN, O1_PP, O1_NP, O1_ST, O1_SIZE = (ph["out1"].lanes, ph["out1"].per_pass,
                                           ph["out1"].passes, ph["out1"].steps, ph["out1"].size)
    O2_LN, O2_PP, O2_NP, O2_ST, O2_SIZE = (ph["out2"].lanes, ph["out2"].per_pass,
                                           ph["out2"].passes, ph["out2"].steps, ph["out2"].size)
    TS_LN, TS_PP, TS_NP, TS_ST, TS_SIZE = (ph["tail_skip"].lanes, ph["tail_skip"].per_pass,
                                           ph["tail_skip"].passes, ph["tail_skip"].steps,
                                           ph["tail_skip"].size)
    GATE_LAYER, RES_LAYER = 2 * ph["gate"].size, ph["res"].size
    GATE_HALF = GATE_ST * NT  # within a pass, the sigmoid rows follow the tanh rows
    # Packed weight buffer (plan.weight_layout).
    w = plan.weight_layout
    W_EMB, W_DB, W_RB, W_SKB, W_O1B, W_O2B = (w["embedding"], w["dilated_b"], w["res_b"],
                                              w["skip_b"], w["out1_b"], w["out2_b"])
    W_GATE, W_RES, W_PRE, W_SKIP, W_O1, W_O2 = (w["gate"], w["res"], w["pre"], w["skip"],
                                                w["out1"], w["out2"])
    W_TS = w["tail_skip"]
    # One pipeline's hand-off area (plan.exchange_layout) and step counters.
    x = plan.exchange_layout
    X_X, X_SKIP, X_LOGITS, XCH = x["x"], x["skip"], x["logits"], x["total"]
    NFLAGS = plan.flags_per_pipeline
    F_X, F_SKIP, F_LOGITS = 0, G * FLAG_STRIDE, 2 * G * FLAG_STRIDE
    # Shared memory (plan.smem_layout); the vectors are relative to the utterance's area.
    m = plan.smem_layout
    SMEM, SCRATCH, UTT, PER_UTT = m["total"], m["scratch"], m["utterances"], m["per_utterance"]
    # Staging offsets per chain group / output part (constant arrays).
    S_GATE, S_RES = np.array(m["stage_gate"], np.int64), np.array(m["stage_res"], np.int64)
    S_O1, S_O2 = np.array(m["stage_out1"], np.int64), np.array(m["stage_out2"], np.int64)
    S_TS = m["stage_tail_skip"]
    ROLES = plan.roles_per_block
    GB = G if FUSED else 1  # chain groups per block: each keeps its pre-activations and ring rows
    V_X, V_PAST, V_PRE, V_Z = m["x"], m["past"], m["pre"], m["z"]
    V_SKIP, V_HID, V_LOGITS, V_CDF, V_WARPS, V_XCH = (m["skip"], m["hidden"], m["logits"],
                                                       m["cdf"], m["warps"], m["exchange"])
    RING_ROWS = plan.ring_rows
    C = max(1, NC // NT)  # classes per thread in the sampler
    NW = NT // WARP
    load4, load_l2, load_volatile, group_sum, warp_max, warp_scan = _warp_primitives(plan.simulated)
    gate_dot, res_dot, pre_dot, skip_dot, out1_dot, out2_dot, tail_skip_dot = (
        _phase_dot(ph[n], load4)
        for n in ("gate", "res", "pre", "skip", "out1", "out2", "tail_skip"))
    device = _device_function()

    @device
    def xload(sm, xchg, i):
        if SHARED_X:
            return sm[i]
        return load_l2(xchg, i)

    @device
    def xstore(sm, xchg, i, v):
        if SHARED_X:
            sm[i] = v
        else:
            xchg[i] = v

    @device
    def publish(flags, index, ftid, step):
        """Make this block's stores of `step` visible, then bump the link's counter."""
        if not SHARED_X:
            cuda.threadfence()
        cuda.syncthreads()
        if not SHARED_X and ftid == 0:
            cuda.atomic.exch(flags, index, step)

    @device
    def wait_for(flags, first, count, step, ftid, state, status, slot, spin_limit):
        """Wait until `count` counters from `first` reach `step`. False: gave up."""
        if not SHARED_X and ftid < count:
            index = first + ftid * FLAG_STRIDE
            spins = 0
            while load_volatile(flags, index) < step:
                spins += 1
                if spins > spin_limit:
                    state[0] = 1
                    status[slot] = 1
                    break
            cuda.threadfence()
        cuda.syncthreads()
        return state[0] == 0

    @device
    def block_sum(sm, ub, ftid, tid, v):
        v = group_sum(sm, SCRATCH, ftid, v, WARP)
        if NW == 1:
            return v
        if tid % WARP == 0:
            sm[ub + V_WARPS + tid // WARP] = v
        cuda.syncthreads()
        total = sm[ub + V_WARPS]
        for i in range(1, NW):
            total += sm[ub + V_WARPS + i]
        cuda.syncthreads()
        return total

    @device
    def block_max(sm, ub, ftid, tid, v):
        v = warp_max(sm, SCRATCH, ftid, v)
        if NW == 1:
            return v
        if tid % WARP == 0:
            sm[ub + V_WARPS + tid // WARP] = v
        cuda.syncthreads()
        best = sm[ub + V_WARPS]
        for i in range(1, NW):
            best = max(best, sm[ub + V_WARPS + i])
        cuda.syncthreads()
        return best

    @device
    def block_exclusive_scan(sm, ub, ftid, tid, v):
        inclusive, exclusive = warp_scan(sm, SCRATCH, ftid, v)
        if NW == 1:
            return exclusive
        warp = tid // WARP
        if tid % WARP == WARP - 1:
            sm[ub + V_WARPS + warp] = inclusive
        cuda.syncthreads()
        for i in range(warp):
            exclusive += sm[ub + V_WARPS + i]
        cuda.syncthreads()
        return exclusive

    @device
    def pre_activations(wpk, sm, ring, cond, history, u, ty, g, t, s, tid, ftid):
        """pre[ll] = W0 x_l[t - d] + b + cond[t, l] for the group's layers: everything of
        the gate input that does not depend on this sample. Also keeps each layer's ring
        row for step t, which the chain overwrites with x_l[t] (a 64-bit modulo less on the
        critical path)."""
        ub = UTT + ty * PER_UTT
        gb = g if FUSED else 0
        for i in range(tid, LG * R, NT):
            ll = i // R
            l = FIRST[g] + ll
            if l < END[g]:
                row = OFF[l] + t % DIL[l]
                sm[ub + V_PAST + i] = history[u, row, i - ll * R]
                if i == ll * R:
                    ring[(ty * GB + gb) * LG + ll] = row
        cuda.syncthreads()
        lane = tid % PRE_LN
        for p in range(PRE_NP):
            row = p * PRE_PP + tid // PRE_LN
            ll = min(row // R2, LG - 1)
            a = pre_dot(wpk, W_PRE + g * PRE_SIZE + p * PRE_ST * NT + VECTOR * tid,
                        sm, ub + V_PAST + ll * R + lane)
            a = group_sum(sm, SCRATCH, ftid, a, PRE_LN)
            l = FIRST[g] + ll
            if lane == 0 and row < LG * R2 and l < END[g]:
                c = row - ll * R2
                sm[ub + V_PRE + gb * LG * R2 + row] = (a + wpk[W_DB + l * R2 + c]) + cond[u, s, l, c]
        cuda.syncthreads()

    @device
    def chain_layer(wpk, sm, ring, history, live, u, ty, g, ll, tid, ftid):
        """Layer FIRST[g] + ll of this sample: gate (W1 x + pre), then residual."""
        ub = UTT + ty * PER_UTT
        gb = g if FUSED else 0
        l = FIRST[g] + ll
        slot = g * LG + ll  # its place in the packed weights
        pre = ub + V_PRE + (gb * LG + ll) * R2
        # x_l[t] takes the ring slot of x_l[t - d], which pre_activations already read.
        if live:
            row = ring[(ty * GB + gb) * LG + ll]
            for r in range(tid, R, NT):
                history[u, row, r] = sm[ub + V_X + r]
        lane = tid % GATE_LN
        for p in range(GATE_NP):
            row = p * GATE_PP + tid // GATE_LN
            col = p * 2 * GATE_HALF + VECTOR * tid
            if STAGE_CHAIN:
                base = S_GATE[g] + ll * GATE_LAYER + col
                a = gate_dot(sm, base, sm, ub + V_X + lane)
                b = gate_dot(sm, base + GATE_HALF, sm, ub + V_X + lane)
            else:
                base = W_GATE + slot * GATE_LAYER + col
                a = gate_dot(wpk, base, sm, ub + V_X + lane)
                b = gate_dot(wpk, base + GATE_HALF, sm, ub + V_X + lane)
            a = group_sum(sm, SCRATCH, ftid, a, GATE_LN)
            b = group_sum(sm, SCRATCH, ftid, b, GATE_LN)
            if lane == 0 and row < R:
                ht = a + sm[pre + row]
                hs = b + sm[pre + R + row]
                sm[ub + V_Z + ll * R + row] = math.tanh(ht) * (_F1 / (_F1 + math.exp(-hs)))
        cuda.syncthreads()
        if l < L - 1:  # the last layer's residual output feeds nothing
            lane = tid % RES_LN
            for p in range(RES_NP):
                row = p * RES_PP + tid // RES_LN
                col = p * RES_ST * NT + VECTOR * tid
                if STAGE_CHAIN:
                    a = res_dot(sm, S_RES[g] + ll * RES_LAYER + col, sm, ub + V_Z + ll * R + lane)
                else:
                    a = res_dot(wpk, W_RES + slot * RES_LAYER + col, sm, ub + V_Z + ll * R + lane)
                a = group_sum(sm, SCRATCH, ftid, a, RES_LN)
                if lane == 0 and row < R:
                    sm[ub + V_X + row] = sm[ub + V_X + row] + (a + wpk[W_RB + l * R + row])
            cuda.syncthreads()

    @device
    def skip_share(wpk, sm, ub, xchg, xbase, g, tid, ftid):
        """This group's skip sum, over the gate outputs of all its layers, to the exchange.
        The tail group's is on the critical path, so its weights are staged."""
        if TAIL and g == G - 1:
            lane = tid % TS_LN
            for p in range(TS_NP):
                row = p * TS_PP + tid // TS_LN
                a = tail_skip_dot(sm, S_TS + p * TS_ST * NT + VECTOR * tid, sm, ub + V_Z + lane)
                a = group_sum(sm, SCRATCH, ftid, a, TS_LN)
                if lane == 0 and row < S:
                    xstore(sm, xchg, xbase + X_SKIP + g * S + row, a + wpk[W_SKB + g * S + row])
            return
        lane = tid % SKIP_LN
        for p in range(SKIP_NP):
            row = p * SKIP_PP + tid // SKIP_LN
            a = skip_dot(wpk, W_SKIP + g * SKIP_SIZE + p * SKIP_ST * NT + VECTOR * tid,
                         sm, ub + V_Z + lane)
            a = group_sum(sm, SCRATCH, ftid, a, SKIP_LN)
            if lane == 0 and row < S:
                xstore(sm, xchg, xbase + X_SKIP + g * S + row, a + wpk[W_SKB + g * S + row])

    @device
    def output_part(wpk, sm, ub, xchg, xbase, k, tid, ftid):
        """relu(skip) -> this part's slice of relu(out1) -> its share of the logits."""
        for i in range(tid, S, NT):
            v = xload(sm, xchg, xbase + X_SKIP + i)
            for g in range(1, G):
                v += xload(sm, xchg, xbase + X_SKIP + g * S + i)
            sm[ub + V_SKIP + i] = max(v, _F0)
        cuda.syncthreads()
        lane = tid % O1_LN
        for p in range(O1_NP):
            row = p * O1_PP + tid // O1_LN
            col = p * O1_ST * NT + VECTOR * tid
            if STAGE_OUT:
                a = out1_dot(sm, S_O1[k] + col, sm, ub + V_SKIP + lane)
            else:
                a = out1_dot(wpk, W_O1 + k * O1_SIZE + col, sm, ub + V_SKIP + lane)
            a = group_sum(sm, SCRATCH, ftid, a, O1_LN)
            if lane == 0 and row < AK:
                sm[ub + V_HID + row] = max(a + wpk[W_O1B + k * AK + row], _F0)
        cuda.syncthreads()
        lane = tid % O2_LN
        for p in range(O2_NP):
            row = p * O2_PP + tid // O2_LN
            col = p * O2_ST * NT + VECTOR * tid
            if STAGE_OUT:
                a = out2_dot(sm, S_O2[k] + col, sm, ub + V_HID + lane)
            else:
                a = out2_dot(wpk, W_O2 + k * O2_SIZE + col, sm, ub + V_HID + lane)
            a = group_sum(sm, SCRATCH, ftid, a, O2_LN)
            if lane == 0 and row < NC:
                xstore(sm, xchg, xbase + X_LOGITS + k * NC + row, a)

    @device
    def sample(wpk, sm, ub, xchg, xbase, uniform, teacher_class, logits_out, live, u, s,
               tid, ftid):
        """The class `sample_classes` draws: softmax, cdf, count of cdf entries <= u."""
        first = tid * C
        best = _NEG_INF
        for j in range(C):
            c = first + j
            if c < NC:
                v = wpk[W_O2B + c] + xload(sm, xchg, xbase + X_LOGITS + c)
                for k in range(1, K):
                    v += xload(sm, xchg, xbase + X_LOGITS + k * NC + c)
                sm[ub + V_LOGITS + c] = v
                if live and logits_out.shape[1] > 0:
                    logits_out[u, s, c] = v
                best = max(best, v)
        if teacher_class >= 0:
            cuda.syncthreads()  # the logits stores are done before the next step reuses them
            return teacher_class
        best = block_max(sm, ub, ftid, tid, best)
        total = _F0
        for j in range(C):
            c = first + j
            if c < NC:
                e = math.exp(sm[ub + V_LOGITS + c] - best)
                sm[ub + V_LOGITS + c] = e
                total += e
        total = block_sum(sm, ub, ftid, tid, total)
        running = _F0
        for j in range(C):
            c = first + j
            if c < NC:
                running += sm[ub + V_LOGITS + c] / total
                sm[ub + V_CDF + c] = running
        before = block_exclusive_scan(sm, ub, ftid, tid, running)
        count = _F0
        for j in range(C):
            c = first + j
            if c < NC and before + sm[ub + V_CDF + c] <= uniform:
                count += _F1
        count = block_sum(sm, ub, ftid, tid, count)
        return min(int(count), NC - 1)

    @device
    def chain_step(wpk, sm, ring, cond, history, xchg, flags, status, live, u, ty, g, cls, s,
                   t, n_steps, xbase, fbase, slot, state, tid, ftid, spin_limit):
        """Chain group g's share of step s. False: gave up waiting for its input."""
        ub = UTT + ty * PER_UTT
        if g == 0:
            for r in range(tid, R, NT):
                sm[ub + V_X + r] = wpk[W_EMB + cls * R + r]
        else:
            if not wait_for(flags, fbase + F_X + (g - 1) * FLAG_STRIDE, 1, s + 1, ftid, state,
                            status, slot, spin_limit):
                return False
            for r in range(tid, R, NT):
                sm[ub + V_X + r] = xload(sm, xchg, xbase + X_X + (g - 1) * R + r)
        cuda.syncthreads()
        for ll in range(LG):
            if FIRST[g] + ll < END[g]:
                chain_layer(wpk, sm, ring, history, live, u, ty, g, ll, tid, ftid)
        if g < G - 1:
            for r in range(tid, R, NT):
                xstore(sm, xchg, xbase + X_X + g * R + r, sm[ub + V_X + r])
            publish(flags, fbase + F_X + g * FLAG_STRIDE, ftid, s + 1)
        skip_share(wpk, sm, ub, xchg, xbase, g, tid, ftid)
        publish(flags, fbase + F_SKIP + g * FLAG_STRIDE, ftid, s + 1)
        if s + 1 < n_steps:  # off the critical path: the next sample's pre-activations
            pre_activations(wpk, sm, ring, cond, history, u, ty, g, t + 1, s + 1, tid, ftid)
        return True

    def kernel(wpk, cond, uniforms, teacher, history, last_class, tpos, classes, logits_out,
               xchg, flags, status, n_steps, spin_limit):
        tid = cuda.threadIdx.x
        ty = cuda.threadIdx.y  # which of the block's utterances
        ftid = ty * NT + tid
        block = cuda.blockIdx.x  # a split pipeline's block plays role `block`
        n_utt = classes.shape[0]
        u = cuda.blockIdx.y * UPB + ty
        live = u < n_utt  # the last block of a multi-utterance launch may have idle slots
        if not live:
            u = n_utt - 1
        sm = cuda.shared.array(0, float32)
        state = cuda.shared.array(1, int32)
        ring = cuda.shared.array(RING_ROWS, int32)  # per utterance and layer: this step's ring row
        for i in range(ftid, SMEM, NT * UPB):
            sm[i] = _F0  # padding lanes read zeros, never stale NaNs
        if ftid == 0:
            state[0] = 0
        cuda.syncthreads()

        # Roles: chain groups 0..G-1, then output parts G..G+K-1; chain group 0 also samples.
        for r in range(ROLES):
            role = r if FUSED else block
            if STAGE_CHAIN and role < G:
                g = role
                count = END[g] - FIRST[g]
                for i in range(ftid, count * GATE_LAYER, NT * UPB):
                    sm[S_GATE[g] + i] = wpk[W_GATE + g * LG * GATE_LAYER + i]
                for i in range(ftid, count * RES_LAYER, NT * UPB):
                    sm[S_RES[g] + i] = wpk[W_RES + g * LG * RES_LAYER + i]
                if TAIL and g == G - 1:
                    for i in range(ftid, TS_SIZE, NT * UPB):
                        sm[S_TS + i] = wpk[W_TS + i]
            if STAGE_OUT and role >= G:
                k = role - G
                for i in range(ftid, O1_SIZE, NT * UPB):
                    sm[S_O1[k] + i] = wpk[W_O1 + k * O1_SIZE + i]
                for i in range(ftid, O2_SIZE, NT * UPB):
                    sm[S_O2[k] + i] = wpk[W_O2 + k * O2_SIZE + i]
        cuda.syncthreads()

        ub = UTT + ty * PER_UTT
        xbase = ub + V_XCH if SHARED_X else u * XCH
        fbase = u * NFLAGS
        slot = u * NBLK + block
        t0 = tpos[u]
        cls = last_class[u]
        forced = teacher.shape[1] > 0
        samples = FUSED or block == 0
        for r in range(ROLES):
            role = r if FUSED else block
            if role < G:
                pre_activations(wpk, sm, ring, cond, history, u, ty, role, t0, 0, tid, ftid)
        for s in range(n_steps):
            t = t0 + s
            for r in range(ROLES):
                role = r if FUSED else block
                if role < G:
                    if not chain_step(wpk, sm, ring, cond, history, xchg, flags, status, live, u,
                                      ty, role, cls, s, t, n_steps, xbase, fbase, slot, state,
                                      tid, ftid, spin_limit):
                        return
                else:
                    k = role - G
                    if not wait_for(flags, fbase + F_SKIP, G, s + 1, ftid, state, status, slot,
                                    spin_limit):
                        return
                    output_part(wpk, sm, ub, xchg, xbase, k, tid, ftid)
                    publish(flags, fbase + F_LOGITS + k * FLAG_STRIDE, ftid, s + 1)
            if samples:
                if not wait_for(flags, fbase + F_LOGITS, K, s + 1, ftid, state, status, slot,
                                spin_limit):
                    return
                forced_class = teacher[u, s] if forced else -1
                cls = sample(wpk, sm, ub, xchg, xbase, uniforms[u, s], forced_class, logits_out,
                             live, u, s, tid, ftid)
                if live and tid == 0:
                    classes[u, s] = cls

    return kernel


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


class _SharedMemoryOptInError(RuntimeError):
    pass


_KERNELS: dict = {}  # KernelPlan -> compiled kernel; weights are an argument, so shared


def _compiled_kernel(plan: KernelPlan):
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
                                 plan.dilations) != (d.n_layers, d.residual_channels,
                                                     d.skip_channels, d.output_channels,
                                                     self.dilations):
            raise ValueError("the plan was made for other model dimensions")
        self._fixed_plan = plan
        self._packed: dict[KernelPlan, object] = {}  # weights on the device, per layout
        self._smem_cap = H200["smem_per_block"]

    def init_state(self, batch_size: int) -> KernelState:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return KernelState.zeros(batch_size, self.dilations, self.dims.residual_channels)

    def plan(self, batch_size: int) -> KernelPlan:
        """The plan `generate` uses for this batch size on the current device."""
        _numba_cuda()
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
        if getattr(array, "__cuda_array_interface__", None) is not None:
            d = cuda.as_cuda_array(array)
            if not d.is_c_contiguous():
                raise ValueError(f"{name} is not C-contiguous")
            return d
        return cuda.to_device(np.ascontiguousarray(np.asarray(array), dtype=dtype))

    def _check_state(self, state: KernelState, batch: int) -> None:
        rows, R = sum(self.dilations), self.dims.residual_channels
        if not isinstance(state, KernelState):
            raise TypeError(f"state must be a KernelState, got {type(state).__name__}")
        if state.history.shape != (batch, rows, R):
            raise ValueError(f"state.history has shape {state.history.shape}, expected "
                             f"(B, sum(dilations), R) = ({batch}, {rows}, {R})")
        if state.last_class.shape != (batch,) or state.t.shape != (batch,):
            raise ValueError(f"state.last_class and state.t must have shape ({batch},), got "
                             f"{state.last_class.shape} and {state.t.shape}")
        if ((state.last_class < 0) | (state.last_class >= N_CLASSES)).any():
            raise ValueError(f"state.last_class must be classes in [0, {N_CLASSES})")

    def generate(self, cond, uniforms, state: KernelState, *, teacher=None,
                 return_logits: bool = False):
        """Generate one chunk of samples for a batch of utterances.

        cond (B, T, L, 2R) float32, host or device: the chunk's `export_conditioning` slices.
        uniforms (B, T) float32 in [0, 1): the random numbers for sampling.
        state: from `init_state` or the previous chunk; not modified.
        teacher (B, T) int: teacher forcing (then uniforms must be None).

        Returns (classes (B, T) int32, new state), plus logits (B, T, 256) float32 when
        return_logits.
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
        self._check_state(state, B)
        _numba_cuda()
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
        history = cuda.to_device(np.ascontiguousarray(state.history, dtype=np.float32))
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
            wpk, cond_d, uniforms_d, teacher_d, history, last_class, tpos, classes, logits,
            xchg, flags, status, T, SPIN_LIMIT)
        out = classes.copy_to_host()
        if status.copy_to_host().any():
            raise RuntimeError("a block of the split CUDA kernel timed out waiting for another: "
                               "the GPU did not run all blocks at once (is it shared with another "
                               "persistent kernel?)")
        new = KernelState(history.copy_to_host(), out[:, -1].astype(np.int32),
                          state.t.astype(np.int64) + T)
        if return_logits:
            return out, new, logits.copy_to_host()
        return out, new


# ---- checks: PTX, simulator, real GPU ----------------------------------------------------------


def margin_uniforms(model, cond, uniforms):
    """Reference samples, and uniforms moved to the middle of each sampled class's cdf
    interval: the same samples, but no uniform within rounding distance of a cdf step, so
    a kernel that sums in another order must still draw exactly these classes.

    model: a `WaveNet`; cond (B, T, L, 2R) and uniforms (B, T) torch tensors.
    Returns (classes (B, T) int64, uniforms (B, T) float32) torch tensors.
    """
    import torch

    classes, _, logits = model.generate(cond, uniforms, return_logits=True)
    cdf = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)  # (B, T, 256)
    hi = cdf.gather(-1, classes[..., None])[..., 0]
    lo = cdf.gather(-1, (classes - 1).clamp(min=0)[..., None])[..., 0]
    lo = torch.where(classes > 0, lo, torch.zeros_like(lo))
    return classes, ((lo + hi) / 2).float()


def ptx_for(plan: KernelPlan, cc=(9, 0)) -> str:
    """PTX of the kernel for `plan` (no GPU needed: numba-cuda with NVVM is enough)."""
    _numba_cuda()
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


def unlooped_handoff_loads(ptx: str) -> list[str]:
    """Hand-off loads (step counters and exchanged data) that are not re-executed every
    step: those outside every loop that also contains a barrier, i.e. hoisted out of the
    step loop. Must be empty, or a block would spin on a value read once."""
    lines = ptx.splitlines()
    labels = {}
    for i, line in enumerate(lines):
        match = re.match(r"(\$L\w+):", line.strip())
        if match:
            labels[match.group(1)] = i
    barriers = [i for i, line in enumerate(lines) if "bar.sync" in line]
    loops = []
    for j, line in enumerate(lines):
        match = re.search(r"\bbra(?:\.uni)?\s+(\$L\w+);", line)
        if match and labels.get(match.group(1), j) < j:
            i = labels[match.group(1)]
            if any(i < b < j for b in barriers):
                loops.append((i, j))
    return [line.strip() for k, line in enumerate(lines)
            if ("ld.global.cg" in line or "ld.acquire" in line)
            and not any(i < k < j for i, j in loops)]


def _sharp_model(config, seed: int = 0):
    """A randomly initialised WaveNet whose samples depend on every weight: the residual,
    skip and output weights are scaled up so that the logits spread (std ~4) instead of
    giving a near-uniform distribution that hides errors in the network."""
    import torch

    from vocoder.wavenet import WaveNet

    torch.manual_seed(seed)
    model = WaveNet(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("dilated", "res", "skip", "out1", "cond_proj")):
                p.mul_(2.0)
        model.out2.weight.mul_(16.0)
    return model


def _tiny_config():
    from vocoder.wavenet import WaveNetConfig

    return WaveNetConfig(n_layers=3, residual_channels=8, skip_channels=16, output_channels=16,
                         max_dilation=2, cond_channels=8)


def _compare(model, kernel: CudaKernel, batch: int, steps: int, chunks=None, seed: int = 1,
             logits: bool = False) -> str:
    """Kernel vs reference: sampled classes on margin uniforms, in the given chunks, and
    with `logits` also the teacher-forced logits. '' or a one-line failure."""
    import torch

    g = torch.Generator().manual_seed(seed)
    frames = -(-steps // model.config.hop_length)
    mel = torch.rand(batch, frames, model.config.n_mels, generator=g)
    cond = model.conditioning(mel).detach()[:, :steps].contiguous()
    expected, uniforms = margin_uniforms(model, cond, torch.rand(batch, steps, generator=g))
    state = kernel.init_state(batch)
    pieces, start = [], 0
    for n in chunks or [steps]:
        got, state = kernel.generate(cond[:, start:start + n].numpy(),
                                     uniforms[:, start:start + n].numpy(), state)
        pieces.append(got)
        start += n
    got = np.concatenate(pieces, axis=1)
    bad = np.argwhere(got != expected.numpy())
    if len(bad):
        b, t = bad[0]
        return f"first mismatch at utterance {b}, step {t}: kernel {got[b, t]}, reference {int(expected[b, t])}"
    if not (state.t == steps).all() or not (state.last_class == got[:, -1]).all():
        return "the returned state does not match the generated samples"
    if logits:
        _, _, reference = model.generate(cond, None, teacher=expected, return_logits=True)
        _, _, kernel_logits = kernel.generate(cond.numpy(), None, kernel.init_state(batch),
                                              teacher=expected.numpy(), return_logits=True)
        error = np.abs(kernel_logits - reference.numpy()).max()
        if not error <= LOGITS_ATOL:
            return f"teacher-forced logits differ from the reference by up to {error:.3g}"
    return ""


def _simulator_check() -> int:
    sys.setswitchinterval(5e-5)  # the simulator's scheduler busy-waits; hand threads the GIL sooner
    import torch

    torch.set_num_threads(1)
    model = _sharp_model(_tiny_config())
    weights = model.export_weights()
    runs = [
        (CudaKernel(weights, topology="fused", exchange="shared", threads=32, max_lanes=1), 1, 48,
         [1, 20, 27]),
        (CudaKernel(weights, plan=_split_roles_in_one_block(weights)), 1, 16, [7, 9]),
        (CudaKernel(weights, topology="fused", threads=32, utterances_per_block=2), 3, 8, None),
    ]
    for kernel, batch, steps, chunks in runs:
        label = f"simulator, {kernel.plan(batch).describe()}, batch {batch}"
        problem = _compare(model, kernel, batch, steps, chunks, logits=True)
        if problem:
            print(f"{label}: {problem}")
            return 1
        print(f"{label}: {steps} samples and logits equal the reference")
    return 0


def _split_roles_in_one_block(weights) -> KernelPlan:
    """A split plan's whole role graph (2 chain groups, the second a tail, and 2 output
    parts, handing off through global memory) played by one block: what the simulator can
    run of the split topology."""
    dims = validate_exported(weights)
    split = KernelPlan.choose(dims, weights["dilations"], 1, topology="split", threads=32)
    return replace(split, fused=True, groups=2, parts=2, tail=True)


def _compile_check() -> int:
    from vocoder.wavenet import WaveNetConfig

    _numba_cuda()
    configs = {"default": WaveNetConfig(), "medium": WaveNetConfig.medium()}
    variants = []
    for name, c in configs.items():
        dims = validate_exported(_random_weights(c))
        for topology, batch in (("fused", 1), ("split", 1), ("fused", 512)):
            plan = KernelPlan.choose(dims, c.dilations, batch, topology=topology)
            variants.append((f"{name} {topology} batch {batch}", plan))
    for label, plan in variants:
        ptx = ptx_for(plan)
        lines = local_memory_lines(ptx)
        if lines:
            print(f"PTX for sm_90, {label}: local memory used: {lines[0]}")
            return 1
        lines = unlooped_handoff_loads(ptx)
        if lines:
            print(f"PTX for sm_90, {label}: hand-off load hoisted out of the step loop: {lines[0]}")
            return 1
    print(f"PTX for sm_90: {len(variants)} variants compile, no local memory, hand-off loads "
          f"in the step loop")
    return 0


def _random_weights(config, seed: int = 0) -> dict[str, np.ndarray]:
    import torch

    from vocoder.wavenet import WaveNet

    torch.manual_seed(seed)
    return WaveNet(config).export_weights()


def _gpu_check() -> int:
    import torch

    from vocoder.wavenet import WaveNetConfig

    torch.set_num_threads(1)
    for name, config, topologies, steps in (("default", WaveNetConfig(), ("fused", "split"), 2000),
                                            ("medium", WaveNetConfig.medium(), ("split", "fused"), 600)):
        model = _sharp_model(config)
        for topology in topologies:
            kernel = CudaKernel(model.export_weights(), topology=topology)
            for batch, chunks in ((1, [steps // 3, steps - steps // 3]), (3, None)):
                label = f"GPU, {name}, {kernel.plan(batch).describe()}, batch {batch}"
                problem = _compare(model, kernel, batch, steps, chunks, logits=True)
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
    parser = argparse.ArgumentParser(prog="python -m kernels.cuda",
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
        done = subprocess.run([sys.executable, "-m", "kernels.cuda", "--simulator-check"], env=env)
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
