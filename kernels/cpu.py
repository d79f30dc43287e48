"""Fused WaveNet inference on the CPU: every layer of every sample in one numba loop nest.

Per sample the work is a chain of small matrix-vector products (see `vocoder/wavenet.py`)
over weights too large for L1 (default voice 0.65 MB, medium 3.5 MB), so what bounds one
utterance is the rate at which the weights stream from L2 or L3 into the FMA units, not the
FLOPs. Everything is arranged for that stream, once, at load (`pack_weights`):

- Every matrix is stored as blocks of BLOCK = 32 output rows, each block transposed to
  (inputs, 32): the block's outputs stay in AVX-512 registers (two sets, even and odd
  inputs, so four independent FMA chains) while its weights stream past, each weight
  loaded once, every load aligned and stride-1.
- The two taps of each dilated conv are one (2R, 2R) matrix applied to [x[t-d]; x[t]].
- The skip projections of all layers are one (S, L*R) matrix applied after the last layer
  to every layer's gate output: one long stream instead of L short ones.
- All matrices lie in one 64-byte-aligned buffer in the order a sample reads them (a
  misaligned AVX-512 load spans two cache lines; one sequential stream suits the hardware
  prefetchers).
- Channel counts are padded with zeros, each only as far as its product needs: a matrix's
  outputs to a multiple of BLOCK, the residual channels a layer reads (its inputs) to a
  multiple of BLOCK / 2, so that the gate's 2R outputs still fill whole blocks (R = 48 runs
  as 48, not as 64). Zero rows and columns keep the padded channels exactly zero, so padding
  changes no result.

numba cannot express some of this, so a few intrinsics fill in: a stack array that LLVM
keeps in registers (a heap array might alias the weights and would stay in memory), loads
and stores without numba's negative-index wraparound (a compare and select per load that
also blocks pointer increments), one vector store of a register block, a bit cast, and
the weight loads that widen bfloat16 pairs.

Weights in bfloat16 (`weight_format="bf16"`, opt-in) halve the bytes that stream: each
matrix weight keeps the upper 16 bits of its float32 (rounded to nearest even at pack time),
and two of them share a 32-bit word, the even input's weight in the low half and the odd
input's in the high half, so one aligned load feeds both accumulator sets and each half
becomes a float32 with one shift or one mask (no shuffles). Everything else (biases,
embedding, activations, sums) stays float32. A bf16 weight is within 2^-9 of the float32
one (relative); the logits of random-weight models move by up to about 1.5% of their
standard deviation (BENCHMARKS.md). float32 weights remain the default.

Numerics with float32 weights: float32 throughout, with FMA contraction; the sums differ
from torch's in the last bits. exp is a polynomial (about 1 ulp) that vectorizes where
libm's does not; the gate tanh(a) * sigmoid(b) is one expression with one division
(absolute error about 2e-7).
Sampling is `tts.vocoder.wavenet.sample_classes` as torch runs it on the CPU: softmax with max
subtraction, the cdf accumulated in float64 and rounded to float32 per entry (what
torch.cumsum does with float32 on the CPU), the first class whose cdf exceeds u, clamped to
255; with a sharpness, from the logits times it (rounded to float32 first, as torch does). So
the classes match the reference's unless u falls within rounding of a cdf step.

Generation state is a `KernelState`; a batch runs one utterance per thread.
"""

from __future__ import annotations

import sys
import threading
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from tts.vocoder.choice import BACKEND_WEIGHTS
from tts.kernels.state import KernelState, check_lpc, check_sharpness, check_state
from tts.vocoder.lpc import mu_law_tables
from tts.vocoder.inference import validate_exported
from tts._numba import numba  # caches compiled code in the user cache folder

BLOCK = 32  # output rows per register block: two AVX-512 registers per accumulator set
N_CLASSES = 256
_ALIGN = 64  # bytes: one cache line, one AVX-512 register

# float32 constants: a bare Python float in a numba expression would promote it to float64.
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_LOG2E = np.float32(1.44269504088896341)
# ln 2 split in two (Cody-Waite) so that n * _LN2_HI is exact for the n that occur.
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
# exp overflows above 88.72 and goes subnormal below -87.33 (slow on x86); clamping
# changes nothing downstream: 1 + e^88 is already e^88 in float32, and e^-87 is 0 next to 1.
_EXP_HI = np.float32(88.0)
_EXP_LO = np.float32(-87.0)
# Minimax polynomial for e^r on |r| <= ln(2)/2 (Cephes expf), about 1 ulp.
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)
_EXP_BIAS = np.int32(127)  # 2^n as float32 bits: (n + 127) << 23
_MANTISSA_BITS = np.int32(23)
_TANH_SATURATED = np.float32(9.5)  # tanh(9.5) = 1 - 1e-8 rounds to 1.0 in float32

# nogil: utterances generated from several Python threads run at the same time.
_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


# ---- what numba lacks ------------------------------------------------------------------


@intrinsic
def _stack_f32(typingctx, n):
    """A float32 array of literal length n on the stack. LLVM keeps it in registers once
    the loops over it are unrolled; a heap array could alias the weights and would stay in
    memory."""
    if not isinstance(n, types.IntegerLiteral):
        return None
    size = n.literal_value
    array_type = types.Array(types.float32, 1, "C")

    def codegen(context, builder, signature, args):
        data = cgutils.alloca_once(builder, context.get_value_type(types.float32), size=size)
        array = context.make_array(array_type)(context, builder)
        itemsize = context.get_constant(types.intp, 4)
        context.populate_array(array, data=data,
                               shape=cgutils.pack_array(builder, [context.get_constant(types.intp, size)]),
                               strides=cgutils.pack_array(builder, [itemsize]),
                               itemsize=itemsize, meminfo=None)
        return array._getvalue()

    return array_type(n), codegen


@intrinsic
def _f32_from_bits(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (builds 2^n for exp without a
    libm call)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], context.get_value_type(types.int32)) if bits.bitwidth > 32 else args[0]
        return builder.bitcast(low, context.get_value_type(types.float32))

    return types.float32(bits), codegen


@intrinsic
def _load(typingctx, array, index):
    """array.flat[index] for a C-contiguous array, without the negative-index wraparound
    numba adds to signed indices: a compare and a select per load that also keeps LLVM from
    turning the index arithmetic into pointer increments. Indices here are >= 0 by
    construction."""
    if not isinstance(array, types.Array) or array.layout != "C" or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load(builder.gep(data, [args[1]]))

    return array.dtype(array, index), codegen


@intrinsic
def _store_sum(typingctx, out, index, a, b):
    """out[index:index + BLOCK] = a + b for BLOCK-long float32 arrays a and b, as one vector
    add and store. Written elementwise, LLVM splits the sum of two register-held
    accumulators into BLOCK scalar extracts, adds and stores."""
    if not (isinstance(out, types.Array) and out.layout == "C" and out.dtype == types.float32
            and isinstance(index, types.Integer) and a == b == types.Array(types.float32, 1, "C")):
        return None

    def codegen(context, builder, signature, args):
        vector = ir.VectorType(ir.FloatType(), BLOCK)
        sa, sb = signature.args[2], signature.args[3]
        pointer = vector.as_pointer()
        va = builder.load(builder.bitcast(context.make_array(sa)(context, builder, args[2]).data, pointer), align=4)
        vb = builder.load(builder.bitcast(context.make_array(sb)(context, builder, args[3]).data, pointer), align=4)
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        builder.store(builder.fadd(va, vb), builder.bitcast(builder.gep(data, [args[1]]), pointer), align=4)
        return context.get_dummy_value()

    return types.none(out, index, a, b), codegen


def _weight_intrinsic(odd: bool):
    """An intrinsic (stream, at, j) -> float32: weight j of the even (or odd) input of the
    input pair whose first weight is number `at` in the stream (at a multiple of 2*BLOCK).

    float32 stream: the two inputs' BLOCK weights lie one after the other, at + j and
    at + BLOCK + j. bfloat16 stream (uint32 words, see `PackedWeights`): both lie in word
    at/2 + j, the even input's in the low half, moved up by a shift, the odd input's in the
    high half, kept by a mask; 16 bits of zeros below a bfloat16 make it a float32.
    """

    def weight(typingctx, stream, at, j):
        if not (isinstance(stream, types.Array) and stream.layout == "C"
                and stream.dtype in (types.float32, types.uint32)
                and isinstance(at, types.Integer) and isinstance(j, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            intp = context.get_value_type(types.intp)
            at_, j_ = (context.cast(builder, a, t, types.intp)
                       for a, t in zip(args[1:], signature.args[1:]))
            if signature.args[0].dtype == types.float32:
                index = builder.add(at_, j_)
                if odd:
                    index = builder.add(index, ir.Constant(intp, BLOCK))
                return builder.load(builder.gep(data, [index]))
            word = builder.load(builder.gep(data, [builder.add(builder.lshr(at_, ir.Constant(intp, 1)), j_)]))
            i32 = ir.IntType(32)
            bits = (builder.and_(word, ir.Constant(i32, 0xFFFF0000)) if odd
                    else builder.shl(word, ir.Constant(i32, 16)))
            return builder.bitcast(bits, ir.FloatType())

        return types.float32(stream, at, j), codegen

    weight.__name__ = "_odd_weight" if odd else "_even_weight"
    return intrinsic(weight)


_even_weight = _weight_intrinsic(odd=False)
_odd_weight = _weight_intrinsic(odd=True)


# ---- elementwise math that vectorizes -------------------------------------------------


@numba.njit(inline="always", **_JIT)
def _exp(x):
    x = min(max(x, _EXP_LO), _EXP_HI)
    n = np.float32(np.floor(x * _LOG2E + np.float32(0.5)))
    r = x - n * _LN2_HI - n * _LN2_LO
    p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    p = p * (r * r) + r + _F1
    return p * _f32_from_bits((np.int32(n) + _EXP_BIAS) << _MANTISSA_BITS)


@numba.njit(inline="always", **_JIT)
def _gate(a, b):
    """tanh(a) * sigmoid(b) with one division: (e^2a - 1) / ((e^2a + 1) (1 + e^-b)).

    Absolute error about 1e-7 (the numerator cancels near a = 0, where tanh is ~a); exactly
    0 at a = 0, so padded channels stay 0. |a| is clamped to 9.5, where tanh is 1 in
    float32, so the denominator overflows only when sigmoid(b) < 1e-30, and 0 is then right.
    """
    e2a = _exp(_F2 * min(max(a, -_TANH_SATURATED), _TANH_SATURATED))
    return (e2a - _F1) / ((e2a + _F1) * (_F1 + _exp(-b)))


# ---- the register-blocked matrix-vector product -----------------------------------------


@numba.njit(inline="always", **_JIT)
def _matvec(stream, start, n_blocks, K, v, v_start, init, out):
    """out = init + W v[v_start:v_start + K] for the (n_blocks * BLOCK, K) matrix W stored
    from weight row `start` of the stream: weight row start + b*K + k holds W[b*BLOCK + j, k]
    for j < BLOCK (in float32 stream[start + b*K + k, j]; in bfloat16 see `PackedWeights`).

    Two accumulator sets (even and odd k) give four independent FMA chains, enough to hide
    the FMA latency. `out` may be `init`.
    """
    for b in range(n_blocks):
        base = b * BLOCK
        acc0 = _stack_f32(BLOCK)
        acc1 = _stack_f32(BLOCK)
        for j in range(BLOCK):
            acc0[j] = _load(init, base + j)
            acc1[j] = _F0
        at = (start + b * K) * BLOCK  # flat index of W[b*BLOCK, 0]
        for k in range(0, K, 2):
            v0 = _load(v, v_start + k)
            v1 = _load(v, v_start + k + 1)
            for j in range(BLOCK):
                acc0[j] += _even_weight(stream, at, j) * v0
                acc1[j] += _odd_weight(stream, at, j) * v1
            at += 2 * BLOCK
        _store_sum(out, base, acc0, acc1)


# ---- one utterance, one chunk -------------------------------------------------------------


@numba.njit(**_JIT)
def _generate_utterance(stream, embedding, dilated_b, res_b, skip_b, out1_b, out2_b,
                        dilations, offsets, lpc_embedding, bounds, decoded, cond, uniforms, sharpness,
                        teacher, lpc, history, signal, last_class, t0, classes, logits_out):
    """Generate the next T samples of one utterance, updating `history` and `signal` in
    place; return the class of the last sample.

    stream, embedding, the biases, lpc_embedding, bounds and decoded: `PackedWeights`. cond
    (T, L, 2R). uniforms (T,) float32, or empty under teacher forcing, where teacher (T,)
    int32 holds the classes to feed back. sharpness (T,) float32 scales each sample's logits
    before sampling, or is empty (no scaling). lpc (T, order) float32: each sample's
    prediction coefficients with LPCNet's inputs (order 0 without). history (sum(dilations),
    R). signal (order,) float64: the last samples of the signal, oldest first. classes (T,)
    int32 out. logits_out (T, 256) out, or (0, 256) when not wanted.
    """
    T, L = cond.shape[0], cond.shape[1]
    R = history.shape[1]
    H, Rp, Sp, Ap = dilated_b.shape[1] // 2, res_b.shape[1], skip_b.shape[0], out1_b.shape[0]
    use_teacher = teacher.shape[0] > 0
    sharpen = sharpness.shape[0] > 0
    want_logits = logits_out.shape[0] > 0
    # The row where each matrix starts in the stream (see `PackedWeights`).
    dilated_rows, res_rows = 4 * H * H // BLOCK, Rp * H // BLOCK
    skip_start = L * (dilated_rows + res_rows)
    out1_start = skip_start + Sp * L * H // BLOCK
    out2_start = out1_start + Ap * Sp // BLOCK

    # [x[t-d]; x[t]] of the current layer, H channels each; x[t] is v[H:], Rp long because
    # the residual product writes whole blocks (its rows past R are zero: x stays 0 there).
    v = np.zeros(H + Rp, np.float32)
    x = v[H:]
    h = np.zeros(2 * H, np.float32)  # gate pre-activations: tanh half, sigmoid half; padding stays 0
    z = np.zeros(L * H, np.float32)  # every layer's gate output, for the fused skip product
    skip = np.empty(Sp, np.float32)
    hidden = np.empty(Ap, np.float32)
    logits = np.empty(N_CLASSES, np.float32)
    ring = np.empty(L, np.int64)  # slot t % d of each layer's ring, advanced without a division
    for l in range(L):
        ring[l] = t0 % dilations[l]

    order = signal.shape[0]
    prediction = 0.0
    previous = last_class
    for i in range(T):
        for c in range(Rp):
            x[c] = embedding[previous, c]
        if order > 0:
            prediction = _predict(lpc[i], signal)
            s = np.searchsorted(bounds, signal[order - 1])
            p = N_CLASSES + np.searchsorted(bounds, prediction)
            for c in range(Rp):
                x[c] += lpc_embedding[s, c] + lpc_embedding[p, c]
        for l in range(L):
            row = offsets[l] + ring[l]
            for c in range(R):
                v[c] = history[row, c]
                history[row, c] = x[c]
            ring[l] += 1
            if ring[l] == dilations[l]:
                ring[l] = 0
            for c in range(R):
                h[c] = dilated_b[l, c] + cond[i, l, c]
                h[H + c] = dilated_b[l, H + c] + cond[i, l, R + c]
            layer_start = l * (dilated_rows + res_rows)
            _matvec(stream, layer_start, 2 * H // BLOCK, 2 * H, v, 0, h, h)
            for c in range(H):
                z[l * H + c] = _gate(h[c], h[H + c])
            for c in range(Rp):
                x[c] += res_b[l, c]
            _matvec(stream, layer_start + dilated_rows, Rp // BLOCK, H, z, l * H, x, x)
        _matvec(stream, skip_start, Sp // BLOCK, L * H, z, 0, skip_b, skip)
        for c in range(Sp):
            skip[c] = max(skip[c], _F0)
        _matvec(stream, out1_start, Ap // BLOCK, Sp, skip, 0, out1_b, hidden)
        for c in range(Ap):
            hidden[c] = max(hidden[c], _F0)
        _matvec(stream, out2_start, N_CLASSES // BLOCK, Ap, hidden, 0, out2_b, logits)
        if want_logits:
            for c in range(N_CLASSES):
                logits_out[i, c] = logits[c]
        if use_teacher:
            previous = teacher[i]
        else:
            if sharpen:
                for c in range(N_CLASSES):
                    logits[c] *= sharpness[i]
            previous = _sample(logits, uniforms[i])
        classes[i] = previous
        if order > 0:
            for k in range(order - 1):
                signal[k] = signal[k + 1]
            signal[order - 1] = prediction + decoded[previous]
    return previous


@numba.njit(cache=True, nogil=True)  # no contraction into fused multiply-adds: the reference's rounding
def _predict(a, signal):
    """p[t] = sum_k a_k s[t-k], k = 1 first, in float64: a (order,) float32, signal (order,)
    the last samples, oldest first."""
    order = signal.shape[0]
    prediction = 0.0
    for k in range(order):
        prediction += np.float64(a[k]) * signal[order - 1 - k]
    return prediction


@numba.njit(**_JIT)
def _sample(logits, u):
    """The class `sample_classes` draws for these logits (256,) and uniform u; overwrites
    logits with exp(logits - max)."""
    lanes = 16
    top = _stack_f32(16)
    for j in range(lanes):
        top[j] = logits[j]
    for k in range(lanes, N_CLASSES, lanes):
        for j in range(lanes):
            top[j] = max(top[j], logits[k + j])
    m = top[0]
    for j in range(1, lanes):
        m = max(m, top[j])
    total = _stack_f32(16)
    for j in range(lanes):
        total[j] = _F0
    for k in range(0, N_CLASSES, lanes):
        for j in range(lanes):
            e = _exp(logits[k + j] - m)
            logits[k + j] = e
            total[j] += e
    s = total[0]
    for j in range(1, lanes):
        s += total[j]
    inv = _F1 / s
    cdf = 0.0  # float64, as torch.cumsum accumulates float32 on the CPU
    for k in range(N_CLASSES):
        cdf += logits[k] * inv
        if np.float32(cdf) > u:
            return np.int32(k)
    return np.int32(N_CLASSES - 1)


@numba.njit(**_JIT)
def _generate_serial(stream, embedding, dilated_b, res_b, skip_b, out1_b, out2_b, dilations,
                     offsets, lpc_embedding, bounds, decoded, cond, uniforms, sharpness, teacher, lpc,
                     history, signal, last_class, t, classes, logits_out):
    """`_generate_utterance` over a batch (B leading on every per-utterance array), one
    utterance after another; updates history, last_class and t in place."""
    for b in range(cond.shape[0]):
        last_class[b] = _generate_utterance(
            stream, embedding, dilated_b, res_b, skip_b, out1_b, out2_b, dilations, offsets,
            lpc_embedding, bounds, decoded, cond[b], uniforms[b], sharpness[b], teacher[b], lpc[b],
            history[b], signal[b], last_class[b], t[b], classes[b], logits_out[b])
        t[b] += cond.shape[1]


@numba.njit(parallel=True, **_JIT)
def _generate_parallel(stream, embedding, dilated_b, res_b, skip_b, out1_b, out2_b, dilations,
                       offsets, lpc_embedding, bounds, decoded, cond, uniforms, sharpness, teacher, lpc,
                       history, signal, last_class, t, classes, logits_out):
    """`_generate_serial` with one utterance per thread: the utterances share nothing but
    the (read-only) weights, so the results are the same."""
    for b in prange(cond.shape[0]):
        last_class[b] = _generate_utterance(
            stream, embedding, dilated_b, res_b, skip_b, out1_b, out2_b, dilations, offsets,
            lpc_embedding, bounds, decoded, cond[b], uniforms[b], sharpness[b], teacher[b], lpc[b],
            history[b], signal[b], last_class[b], t[b], classes[b], logits_out[b])
        t[b] += cond.shape[1]


# ---- weights, once, at load ------------------------------------------------------------


class PackedWeights(NamedTuple):
    """The exported weights in the kernel's layout (see the module docstring). Rp, Sp, Ap
    are R, S, A padded to multiples of BLOCK; H is R padded to a multiple of BLOCK / 2.

    `stream` holds every matrix in the order a sample reads them: per layer the dilated
    conv (2H, 2H) then the residual projection (Rp, H); then the fused skip projection
    (Sp, L*H), out1 (Ap, Sp) and out2 (256, Ap). A matrix W (M, K) [out, in] is stored as
    M / BLOCK blocks of K rows of BLOCK floats: row b*K + k holds W[b*BLOCK:(b+1)*BLOCK, k].
    The dilated conv's inputs are [x[t-d]; x[t]], its outputs [tanh half; sigmoid half],
    each H long.

    In bfloat16 the stream holds uint32 words, half as many rows: word [p, j] packs weight
    j of float32 rows 2p (low 16 bits) and 2p + 1 (high 16 bits), the upper halves of their
    float32 bits after rounding. Every K is even, so rows 2p and 2p + 1 are the inputs
    k = 2q and 2q + 1 of one block, the pair the kernel multiplies together.
    """

    # float32 (N / BLOCK, BLOCK) or bfloat16 pairs uint32 (N / (2*BLOCK), BLOCK), 64-byte
    # aligned, for N = L*(4H^2 + Rp*H) + Sp*L*H + Ap*Sp + 256*Ap weights.
    stream: np.ndarray
    embedding: np.ndarray  # (256, Rp)
    dilated_b: np.ndarray  # (L, 2H)
    res_b: np.ndarray  # (L, Rp)
    skip_b: np.ndarray  # (Sp,) the sum of every layer's skip bias
    out1_b: np.ndarray  # (Ap,)
    out2_b: np.ndarray  # (256,)
    dilations: np.ndarray  # (L,) int64
    offsets: np.ndarray  # (L,) int64, each layer's first row in KernelState.history
    # LPCNet's inputs: embedding_signal's rows, then embedding_prediction's (512, Rp); (0, Rp)
    # for a network without them. bounds and decoded: `tts.vocoder.lpc.mu_law_tables`.
    lpc_embedding: np.ndarray
    bounds: np.ndarray  # (255,) float64
    decoded: np.ndarray  # (256,) float64


def _padded(n: int, multiple: int = BLOCK) -> int:
    return -(-n // multiple) * multiple


def _aligned_zeros(size: int, dtype=np.float32) -> np.ndarray:
    """An array of zeros starting on a 64-byte boundary."""
    itemsize = np.dtype(dtype).itemsize
    buffer = np.zeros(size + _ALIGN // itemsize, dtype)
    start = (-buffer.ctypes.data % _ALIGN) // itemsize
    return buffer[start:start + size]


def bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 values -> their bfloat16 bit patterns as uint16, rounded to nearest, ties to
    even (what torch's .to(torch.bfloat16) does); NaN stays NaN, too-large values become inf.
    """
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    # Adding 0x7FFF plus the lowest kept bit carries into the kept bits exactly when the
    # dropped half is above one half, or exactly one half with an odd kept part.
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    rounded = np.where(np.isnan(values), (bits >> 16) | 0x40, rounded)  # keep NaN quiet, not inf
    return rounded.astype(np.uint16)


def _bfloat16_pairs(stream: np.ndarray) -> np.ndarray:
    """The float32 stream (rows, BLOCK) -> the bfloat16 stream (rows / 2, BLOCK) uint32:
    word [p, j] holds row 2p's weight j in its low half and row 2p+1's in its high half."""
    bits = bfloat16_bits(stream).reshape(-1, 2, BLOCK).astype(np.uint32)
    words = _aligned_zeros(bits.shape[0] * BLOCK, np.uint32).reshape(-1, BLOCK)
    words[:] = bits[:, 0] | (bits[:, 1] << 16)
    return words


def _blocked(matrix: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """matrix (M, K) [out, in] -> (rows / BLOCK, cols, BLOCK), zero-padded to rows x cols."""
    padded = np.zeros((rows, cols), np.float32)
    padded[:matrix.shape[0], :matrix.shape[1]] = matrix
    return np.ascontiguousarray(padded.reshape(rows // BLOCK, BLOCK, cols).transpose(0, 2, 1))


def pack_weights(weights: dict[str, np.ndarray], weight_format: str = "fp32") -> PackedWeights:
    """`export_weights()` output -> the kernel's layout, its matrices in float32 ("fp32") or
    bfloat16 ("bf16"). Raises ValueError naming the first tensor with a wrong key, dtype or
    shape, or for an unknown format."""
    if weight_format not in BACKEND_WEIGHTS["numba"]:
        raise ValueError(f"unknown weight format {weight_format!r}; "
                         f"choose from {', '.join(BACKEND_WEIGHTS['numba'])}")
    L, R, S, A, n_classes, _, lpc_order = validate_exported(weights)
    if n_classes != N_CLASSES:
        raise ValueError(f"the kernel samples {N_CLASSES} classes, the weights have {n_classes}")
    H, Rp, Sp, Ap = _padded(R, BLOCK // 2), _padded(R), _padded(S), _padded(A)
    dw = weights["dilated_w"]  # (L, 2, 2R, R) [layer, tap, out, in]
    pieces = []
    for l in range(L):
        dilated = np.zeros((2 * H, 2 * H), np.float32)  # [out, in]
        for tap in range(2):
            dilated[:R, tap * H:tap * H + R] = dw[l, tap, :R]
            dilated[H:H + R, tap * H:tap * H + R] = dw[l, tap, R:]
        pieces += [_blocked(dilated, 2 * H, 2 * H), _blocked(weights["res_w"][l], Rp, H)]
    skip = np.zeros((S, L, H), np.float32)  # [out, layer, in]
    skip[:, :, :R] = weights["skip_w"].transpose(1, 0, 2)
    pieces += [_blocked(skip.reshape(S, L * H), Sp, L * H),
               _blocked(weights["out1_w"], Ap, Sp), _blocked(weights["out2_w"], n_classes, Ap)]
    stream = _aligned_zeros(sum(p.size for p in pieces))
    stream[:] = np.concatenate([p.reshape(-1) for p in pieces])
    stream = stream.reshape(-1, BLOCK)
    if weight_format == "bf16":
        # Every matrix has an even number of inputs and starts on an even row, so the row
        # pairs are the kernel's (even, odd) input pairs.
        stream = _bfloat16_pairs(stream)

    dilated_b = np.zeros((L, 2 * H), np.float32)
    dilated_b[:, :R] = weights["dilated_b"][:, :R]
    dilated_b[:, H:H + R] = weights["dilated_b"][:, R:]
    dilations = weights["dilations"].astype(np.int64)
    lpc_embedding = (np.concatenate([weights["embedding_signal"], weights["embedding_prediction"]]) if lpc_order
                     else np.zeros((0, R), np.float32))
    decoded, bounds = mu_law_tables(N_CLASSES)
    return PackedWeights(
        stream=stream,
        embedding=np.pad(weights["embedding"], ((0, 0), (0, Rp - R))),
        dilated_b=dilated_b,
        res_b=np.pad(weights["res_b"], ((0, 0), (0, Rp - R))),
        skip_b=np.pad(weights["skip_b"].sum(axis=0, dtype=np.float32), (0, Sp - S)),
        out1_b=np.pad(weights["out1_b"], (0, Ap - A)),
        out2_b=weights["out2_b"].copy(),
        dilations=dilations,
        offsets=KernelState.offsets(dilations),
        lpc_embedding=np.ascontiguousarray(np.pad(lpc_embedding, ((0, 0), (0, Rp - R)))),
        bounds=bounds,
        decoded=decoded,
    )


# ---- the backend ------------------------------------------------------------------------


class NumbaKernel:
    """WaveNet generation on the CPU with the fused numba kernel.

    Same contract as the reference `WaveNet.generate`, on numpy arrays and a `KernelState`.
    Compiled on first use and cached on disk by numba (later processes load it from there in
    about a second). With `parallel`, a batch runs one utterance per thread, on up to
    `numba.get_num_threads()` threads; the results are those of one utterance at a time.
    Safe to call from several Python threads: single utterances run concurrently (the GIL
    is released), batches one after another.

    weight_format "bf16" stores the matrices in bfloat16, half the bytes per sample and so
    faster where streaming the weights bounds the rate (both voice sizes on an AVX-512 x86 core); the
    logits then differ from the reference's by more than float32 rounding (each weight is
    off by up to 2^-9 of itself), so sampled classes differ now and then (BENCHMARKS.md).
    """

    name = "numba"
    takes_tensors = False  # generate's cond as a torch tensor where it lies, else a numpy array
    # numba's "workqueue" thread pool (used where no OpenMP or TBB is found) aborts the
    # process if two threads launch parallel work at once.
    _parallel_lock = threading.Lock()

    def __init__(self, weights: dict[str, np.ndarray], *, parallel: bool = True,
                 weight_format: str = "fp32"):
        self.parallel = parallel
        self.weight_format = weight_format
        self.packed = pack_weights(weights, weight_format)
        self.dims = validate_exported(weights)
        self.dilations = tuple(int(d) for d in weights["dilations"])

    @property
    def lpc_order(self) -> int:
        return self.dims.lpc_order

    def init_state(self, batch_size: int) -> KernelState:
        return KernelState.zeros(batch_size, self.dilations, self.dims.residual_channels, self.lpc_order)

    def generate(self, cond: np.ndarray, uniforms: np.ndarray | None, state: KernelState, *,
                 teacher: np.ndarray | None = None, sharpness: np.ndarray | None = None,
                 lpc: np.ndarray | None = None, return_logits: bool = False):
        """Generate one chunk of samples for a batch of utterances.

        cond (B, T, L, 2R) float32: each utterance's `export_conditioning` slice.
        uniforms (B, T) float32 in [0, 1): the random numbers for sampling.
        state: from `init_state` or the previous chunk; not modified.
        teacher (B, T) int: teacher forcing, the classes to feed back instead of sampled ones
            (then uniforms must be None).
        sharpness (B, T) float32 > 0: each sample is drawn from softmax(sharpness * logits)
            (voicing-dependent sampling, `tts.vocoder.voicing`); None: from softmax(logits).
        lpc (B, T, order) float32: with LPCNet's inputs, each sample's prediction coefficients
            (the predictor runs in the loop, `WaveNet.generate`); None without.

        Returns (classes (B, T) int32, new state), plus logits (B, T, 256) float32 (before
        sharpening) when return_logits.
        """
        L, R = self.dims.n_layers, self.dims.residual_channels
        cond = np.asarray(cond)
        if cond.dtype != np.float32:
            raise ValueError(f"cond has dtype {cond.dtype}, expected float32")
        if cond.ndim != 4 or cond.shape[2:] != (L, 2 * R):
            raise ValueError(f"cond has shape {cond.shape}, expected (B, T, L, 2R) = "
                             f"(B, T, {L}, {2 * R})")
        B, T = cond.shape[:2]
        if (uniforms is None) == (teacher is None):
            raise ValueError("pass exactly one of uniforms (sampling) and teacher (teacher forcing)")
        if teacher is None:
            uniforms = np.ascontiguousarray(uniforms, dtype=np.float32)
            if uniforms.shape != (B, T):
                raise ValueError(f"uniforms have shape {uniforms.shape}, expected (B, T) = ({B}, {T})")
            teacher = np.zeros((B, 0), np.int32)
        else:
            teacher = np.asarray(teacher)
            if teacher.shape != (B, T):
                raise ValueError(f"teacher has shape {teacher.shape}, expected (B, T) = ({B}, {T})")
            if teacher.size and (teacher.min() < 0 or teacher.max() >= self.dims.n_classes):
                raise ValueError(f"teacher classes must lie in [0, {self.dims.n_classes})")
            teacher = np.ascontiguousarray(teacher, dtype=np.int32)
            uniforms = np.zeros((B, 0), np.float32)
        sharpness = check_sharpness(sharpness, B, T, teacher.shape[1] > 0)
        lpc = check_lpc(lpc, B, T, self.lpc_order)
        check_state(state, B, self.dilations, self.dims.residual_channels, self.dims.n_classes, self.lpc_order)
        new = KernelState(np.ascontiguousarray(state.history, dtype=np.float32).copy(),
                          state.last_class.astype(np.int32), state.t.astype(np.int64),
                          np.ascontiguousarray(state.signal, dtype=np.float64).copy())
        classes = np.empty((B, T), np.int32)
        logits = np.empty((B, T if return_logits else 0, N_CLASSES), np.float32)
        args = (*self.packed, np.ascontiguousarray(cond), uniforms, sharpness, teacher, lpc, new.history,
                new.signal, new.last_class, new.t, classes, logits)
        if T > 0 and self.parallel and B > 1:
            # Where numba's thread pool is OpenMP it shares torch's runtime, and a parallel
            # launch leaves torch's intra-op thread count at numba's: put it back (where torch
            # is loaded at all).
            torch = sys.modules.get("torch")
            torch_threads = torch.get_num_threads() if torch is not None else None
            with self._parallel_lock:
                try:
                    _generate_parallel(*args)
                finally:
                    if torch is not None and torch.get_num_threads() != torch_threads:
                        torch.set_num_threads(torch_threads)
        elif T > 0:
            _generate_serial(*args)
        if return_logits:
            return classes, new, logits
        return classes, new
