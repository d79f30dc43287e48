"""Device code of the persistent CUDA WaveNet kernel: `build_kernel(plan)` is the kernel's
Python function for a `KernelPlan`, every size and offset folded in as a constant. numba.cuda
is imported on first use (`_numba_cuda`), and whether it is the simulator is read from it
(`_simulated`, set by NUMBA_ENABLE_CUDASIM), so this module imports without the GPU extra.
The roles, hand-off protocol and thread mapping are described in kernels/cuda.py.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np

from tts.kernels.cuda_plan import FLAG_STRIDE, N_CLASSES, VECTOR, WARP, KernelPlan, _Phase
from tts.kernels.state import KernelState

_SIGNATURE = ("void(float32[::1], float32[:, :, :, ::1], float32[:, ::1], float32[:, ::1], "
              "int32[:, ::1], float32[:, :, ::1], float32[:, :, ::1], float64[:, ::1], int32[::1], "
              "int64[::1], int32[:, ::1], float32[:, :, ::1], float32[::1], int32[::1], int32[::1], "
              "int64, int64)")
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_NEG_INF = np.float32(-np.inf)

# numba.cuda, imported on first use: the GPU packages are an optional extra. The device
# functions below name it as a global of this module, which the simulator swaps for its own
# stand-in while a kernel runs.
cuda = None


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


def _exact_product(simulated: bool):
    """a * b in float64, rounded on its own: `mul.rn.f64` as inline asm on a GPU, which no
    compiler fuses with the add that follows (NVVM contracts a plain multiply-add into an
    FMA), so the predictor rounds as the reference's separate torch ops do."""
    if simulated:
        @cuda.jit(device=True)
        def product(a, b):
            return a * b

        return product
    from llvmlite import ir
    from numba.cuda import types
    from numba.cuda.extending import intrinsic

    @intrinsic
    def product(typingctx, a, b):
        def codegen(context, builder, signature, args):
            f64 = ir.DoubleType()
            asm = ir.InlineAsm(ir.FunctionType(f64, [f64, f64]), "mul.rn.f64 $0, $1, $2;", "=d,d,d")
            return builder.call(asm, list(args))

        return types.float64(types.float64, types.float64), codegen

    return product


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
    from numba import float32, float64, int32

    from tts.vocoder.lpc import mu_law_tables

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
    # LPCNet's inputs (ORDER 0: none, and every branch on it folds away).
    ORDER, W_LPC = plan.lpc_order, w["lpc_embedding"]
    DECODED, BOUNDS = mu_law_tables(NC)  # float64 constant arrays, as the reference's tables
    SEARCH = NC.bit_length() - 1  # halvings of a binary search over the NC - 1 bounds
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
    V_LPC, V_SIGNAL = m["lpc"], m["signal"]
    RING, FLAG = m["ring"], m["flag"]  # in the int32 view of the same memory
    C = max(1, NC // NT)  # classes per thread in the sampler
    NW = NT // WARP
    load4, load_l2, load_volatile, group_sum, warp_max, warp_scan = _warp_primitives(plan.simulated)
    gate_dot, res_dot, pre_dot, skip_dot, out1_dot, out2_dot, tail_skip_dot = (
        _phase_dot(ph[n], load4)
        for n in ("gate", "res", "pre", "skip", "out1", "out2", "tail_skip"))
    device = _device_function()
    exact_product = _exact_product(plan.simulated)

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
                    state[FLAG] = 1
                    status[slot] = 1
                    break
            cuda.threadfence()
        cuda.syncthreads()
        return state[FLAG] == 0

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
    def pre_activations(wpk, sm, ring, cond, lpc, history, u, ty, g, t, s, tid, ftid):
        """pre[ll] = W0 x_l[t - d] + b + cond[t, l] for the group's layers: everything of
        the gate input that does not depend on this sample. Also keeps each layer's ring
        row for step t, which the chain overwrites with x_l[t] (a 64-bit modulo less on the
        critical path), and in group 0 (the sampler's block) stages step t's prediction
        coefficients, so that the predictor reads no global memory."""
        ub = UTT + ty * PER_UTT
        gb = g if FUSED else 0
        if ORDER > 0 and g == 0:
            for k in range(tid, ORDER, NT):
                sm[ub + V_LPC + k] = lpc[u, s, k]
        for i in range(tid, LG * R, NT):
            ll = i // R
            l = FIRST[g] + ll
            if l < END[g]:
                row = OFF[l] + t % DIL[l]
                sm[ub + V_PAST + i] = history[u, row, i - ll * R]
                if i == ll * R:
                    ring[RING + (ty * GB + gb) * LG + ll] = row
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
    def mu_law_class(v):
        """np.searchsorted(BOUNDS, v): how many class bounds lie below v, by a binary search
        of fixed length (every thread of a block searches the same value)."""
        c = 0
        for i in range(SEARCH):
            step = (NC // 2) >> i
            if BOUNDS[c + step - 1] < v:
                c += step
        return c

    @device
    def predict(sm, sig, ub, newest, head):
        """p[t] = sum_k a_k s[t-k] in float64, k = 1 first, one term at a time as the
        reference sums it. newest is s[t-1]; the older samples come from the doubled ring,
        where s[t-1-k] sits at head + ORDER - 1 - k (head = t % ORDER). Every thread of the
        block computes it, from the same shared words (broadcast reads), so the classes
        and p[t] are in every thread's registers without a barrier."""
        last = (ub + V_SIGNAL) // 2 + head + ORDER - 1  # where s[t-1] would sit
        p = 0.0
        p += exact_product(np.float64(sm[ub + V_LPC]), newest)
        for k in range(1, ORDER):
            p += exact_product(np.float64(sm[ub + V_LPC + k]), sig[last - k])
        return p

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
            row = ring[RING + (ty * GB + gb) * LG + ll]
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
    def sample(wpk, sm, ub, xchg, xbase, uniform, sharp, teacher_class, logits_out, live, u, s,
               tid, ftid):
        """The class `sample_classes` draws from sharp * logits: softmax, cdf, count of cdf
        entries <= u. logits_out gets the logits before sharpening."""
        first = tid * C
        best = _NEG_INF
        for j in range(C):
            c = first + j
            if c < NC:
                v = wpk[W_O2B + c] + xload(sm, xchg, xbase + X_LOGITS + c)
                for k in range(1, K):
                    v += xload(sm, xchg, xbase + X_LOGITS + k * NC + c)
                if live and logits_out.shape[1] > 0:
                    logits_out[u, s, c] = v
                v *= sharp
                sm[ub + V_LOGITS + c] = v
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
    def chain_step(wpk, sm, ring, cond, lpc, history, xchg, flags, status, live, u, ty, g, cls,
                   signal_class, prediction_class, s, t, n_steps, xbase, fbase, slot, state, tid,
                   ftid, spin_limit):
        """Chain group g's share of step s. False: gave up waiting for its input."""
        ub = UTT + ty * PER_UTT
        if g == 0:
            for r in range(tid, R, NT):
                v = wpk[W_EMB + cls * R + r]
                if ORDER > 0:  # the numba kernel's order: e + (e_signal + e_prediction)
                    v += (wpk[W_LPC + signal_class * R + r]
                          + wpk[W_LPC + (NC + prediction_class) * R + r])
                sm[ub + V_X + r] = v
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
            pre_activations(wpk, sm, ring, cond, lpc, history, u, ty, g, t + 1, s + 1, tid, ftid)
        return True

    def kernel(wpk, cond, uniforms, sharpness, teacher, lpc, history, signal, last_class, tpos,
               classes, logits_out, xchg, flags, status, n_steps, spin_limit):
        tid = cuda.threadIdx.x
        ty = cuda.threadIdx.y  # which of the block's utterances
        ftid = ty * NT + tid
        block = cuda.blockIdx.x  # a split pipeline's block plays role `block`
        n_utt = classes.shape[0]
        u = cuda.blockIdx.y * UPB + ty
        live = u < n_utt  # the last block of a multi-utterance launch may have idle slots
        if not live:
            u = n_utt - 1
        # One dynamic shared memory, seen as float32 (`sm`) and as int32 (`ring` rows and the
        # gave-up flag at their own offsets): dynamic shared arrays all alias.
        sm = cuda.shared.array(0, float32)
        ring = cuda.shared.array(0, int32)
        state = ring
        sig = cuda.shared.array(0, float64)  # the signal ring, at (ub + V_SIGNAL) // 2
        for i in range(ftid, SMEM, NT * UPB):
            sm[i] = _F0  # padding lanes read zeros, never stale NaNs; the flag starts at 0
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
        sharpened = sharpness.shape[1] > 0
        samples = FUSED or block == 0
        # LPCNet's inputs, in the sampler's block: s[t-1] and p[t] in every thread's
        # registers, the older samples in the shared ring; s[t'] goes to slots t' % ORDER
        # and t' % ORDER + ORDER (`predict`). state.signal holds s[t0 - ORDER + k] at k.
        newest, prediction, head = 0.0, 0.0, 0
        signal_class, prediction_class = 0, 0
        if ORDER > 0 and samples:
            head = t0 % ORDER
            newest = signal[u, ORDER - 1]
            for j in range(tid, ORDER, NT):
                place = (ub + V_SIGNAL) // 2 + (head + j) % ORDER
                sig[place] = signal[u, j]
                sig[place + ORDER] = signal[u, j]
        for r in range(ROLES):
            role = r if FUSED else block
            if role < G:
                pre_activations(wpk, sm, ring, cond, lpc, history, u, ty, role, t0, 0, tid, ftid)
        for s in range(n_steps):
            t = t0 + s
            if ORDER > 0 and samples:
                prediction = predict(sm, sig, ub, newest, head)
                signal_class = mu_law_class(newest)
                prediction_class = mu_law_class(prediction)
            for r in range(ROLES):
                role = r if FUSED else block
                if role < G:
                    if not chain_step(wpk, sm, ring, cond, lpc, history, xchg, flags, status, live,
                                      u, ty, role, cls, signal_class, prediction_class, s, t,
                                      n_steps, xbase, fbase, slot, state, tid, ftid, spin_limit):
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
                sharp = sharpness[u, s] if sharpened else _F1
                cls = sample(wpk, sm, ub, xchg, xbase, uniforms[u, s], sharp, forced_class,
                             logits_out, live, u, s, tid, ftid)
                if live and tid == 0:
                    classes[u, s] = cls
                if ORDER > 0:
                    # The synthesis filter, s[t] = p[t] + e[t]. Every thread keeps s[t]; one
                    # stores it in the ring. No barrier: step t + 1 reads every slot but
                    # these two, and step t's reads of them were before sample's barriers.
                    newest = prediction + DECODED[cls]
                    if tid == 0:
                        sig[(ub + V_SIGNAL) // 2 + head] = newest
                        sig[(ub + V_SIGNAL) // 2 + head + ORDER] = newest
                    head += 1
                    if head == ORDER:
                        head = 0
        if ORDER > 0 and samples:
            cuda.syncthreads()  # the last step's ring stores
            if live:
                for j in range(tid, ORDER, NT):
                    signal[u, j] = sig[(ub + V_SIGNAL) // 2 + head + j]

    return kernel

