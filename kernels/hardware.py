"""One CPU core's nominal speed, from what the kernel reports: its model name, the flags that
decide how fast it multiplies (float32 and bfloat16), and its clock. The kernel bench bounds
the numba kernel by it, and the trainer's format probe prints it; neither hard-codes a CPU.
"""

from __future__ import annotations

import platform
from pathlib import Path

# The flags that decide how fast a core runs float32 and bfloat16 matrix products.
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_name_and_flags() -> tuple[str, set[str]]:
    """The CPU's model name and its flags (from /proc/cpuinfo; elsewhere, what platform says)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return name, flags


def nominal_peak(flags: set[str], clock_hz: float) -> dict[str, float]:
    """One core's nominal FLOP/s from its flags: two fused multiply-add pipes of the widest
    vector unit, and for bfloat16 twice the float32 lanes (AVX-512 BF16's dot products) or
    AMX's 1,024 multiply-adds a cycle. Cores that split a wide vector into two halves (AMD
    Zen 4's AVX-512) reach half of this; the measured matrix product says what is real."""
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fp32 = 2 * 2 * lanes * clock_hz  # 2 pipes x FMA (2 FLOPs) x lanes
    if "amx_bf16" in flags:
        bf16 = 2 * 1024 * clock_hz
    elif "avx512_bf16" in flags:
        bf16 = 2 * fp32
    else:
        bf16 = fp32  # emulated: float32 arithmetic at best
    return {"fp32": fp32, "bf16": bf16}


def clock_hz() -> float:
    """The core's clock as the kernel reports it (a virtual machine's nominal rate)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1e6
    except (OSError, ValueError):
        pass
    return float("nan")
