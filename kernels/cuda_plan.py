"""The plan of the persistent CUDA WaveNet kernel: topology, thread mapping (`_Phase`), and
the weight, hand-off and shared-memory layouts (`KernelPlan`, `pack_weights`). Plain numpy:
no GPU packages needed. The design these layouts serve is described in kernels/cuda.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

N_CLASSES = 256
WARP = 32
VECTOR = 4  # float32 weights per load: 16 bytes, LDG.128 / LDS.128
FLAG_STRIDE = 32  # int32s between step counters: one 128-byte line each
H200 = {"sm_count": 132, "smem_per_block": 232448}  # used where no device can be asked
# Weights all blocks together may stream from L2 per step: at 16,000 steps/s (real time)
# 192 MB is ~3 TB/s, about half of what the H200's L2 delivers.
L2_STREAM_BUDGET = 192 * 2**20


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
    lpc_order: int = 0  # > 0: LPCNet's inputs, the predictor of this order in the sample loop
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
        if self.lpc_order < 0:
            raise ValueError(f"lpc_order must be >= 0, got {self.lpc_order}")
        if self.tail and self.groups < 2:
            raise ValueError("a tail group needs at least 2 chain groups")
        if any(first >= end for first, end in self.group_layers):
            raise ValueError(f"{self.groups} groups of {self.layers_per_group} layers leave a "
                             f"group empty")

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
        """Per utterance of a block and layer it runs: the step's ring row."""
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
            "embedding": N_CLASSES * R,
            # LPCNet's inputs: embedding_signal's rows, then embedding_prediction's.
            "lpc_embedding": 2 * N_CLASSES * R if self.lpc_order else 0,
            "dilated_b": L * 2 * R, "res_b": L * R, "skip_b": G * S,
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
            # LPCNet's inputs: the sample's prediction coefficients (float32), and the
            # signal's last lpc_order samples as float64, each stored twice (slots j and
            # j + order) so the predictor reads them oldest to newest without a modulo;
            # 2 float32 words per float64, 8-byte aligned as every vector starts on 32 words.
            "lpc": self.lpc_order, "signal": 4 * self.lpc_order,
        }
        rel = 0
        for name, size in vectors.items():
            m[name] = rel
            rel += _align(size)
        m["per_utterance"] = rel
        at += rel * self.utterances_per_block
        # Integers, read through an int32 view of the same dynamic shared memory: the ring
        # rows, then the block's gave-up flag. No static shared arrays: the CUDA simulator
        # allocates those per thread racily, and a thread can end up with its own copy.
        m["ring"] = at
        m["flag"] = at + self.ring_rows
        m["total"] = _align(m["flag"] + 1)
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
                + (f" ({' and '.join(staged)} staged)" if staged else "")
                + (f", LPC inputs of order {self.lpc_order}" if self.lpc_order else ""))

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
                    max_lanes=max_lanes, lpc_order=dims.lpc_order, simulated=simulated)
        budget = smem_limit // 4  # 32-bit words of dynamic shared memory

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
    LG, K, AK = plan.layers_per_group, plan.parts, plan.rows_per_part
    buf = np.zeros(lay["total"], np.float32)

    def put(name, arr):
        flat = np.ascontiguousarray(arr, dtype=np.float32).ravel()
        buf[lay[name]:lay[name] + flat.size] = flat

    put("embedding", w["embedding"])
    if plan.lpc_order:
        put("lpc_embedding", np.concatenate([w["embedding_signal"], w["embedding_prediction"]]))
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

