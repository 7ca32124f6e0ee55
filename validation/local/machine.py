"""Facts about the machine being measured (CPU model, last-level cache, BLAS library and its threads) and the
process-wide switches a measurement sets (BLAS threads, the caching allocator)."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

FALLBACK_LLC_BYTES = 32 * 2**20


@dataclass(frozen=True, slots=True)
class MachineFacts:
    """What a measurement records about the machine it ran on."""

    cpu_model: str
    logical_cpus: int
    blas: str
    blas_threads: int
    llc_bytes: int

    @classmethod
    def of_this_machine(cls) -> MachineFacts:
        """Read now: BLAS threads as currently set (set_blas_threads first)."""
        return cls(cpu_model=cpu_model_name(), logical_cpus=os.cpu_count() or 1, blas=blas_name(),
                   blas_threads=blas_threads(), llc_bytes=last_level_cache_bytes())


def machine_facts() -> tuple[tuple[str, str], ...]:
    """(name, value) pairs a serving log records: CPU, BLAS and its threads, numpy and Python versions."""
    return (
        ("cpu_model", cpu_model_name()),
        ("logical_cpus", str(os.cpu_count() or 1)),
        ("blas", blas_name()),
        ("blas_threads", str(blas_threads())),
        ("numpy", np.__version__),
        ("python", platform.python_version()),
    )


def meminfo_bytes(key: str, meminfo: Path = Path("/proc/meminfo")) -> int:
    """One /proc/meminfo field (MemTotal, MemAvailable, ...) in bytes."""
    for line in meminfo.read_text().splitlines():
        if line.startswith(f"{key}:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"{meminfo}: {key} unit {unit!r} is not kB")
            return int(value) * 1024
    raise ValueError(f"{meminfo} has no {key} line")


def last_level_cache_bytes() -> int:
    """Largest cache of cpu0 from /sys (index*/size, e.g. '36608K'); 32 MiB when it cannot be read."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        match = re.fullmatch(r"(\d+)([KMG]?)", path.read_text().strip())
        if match:
            sizes.append(int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)])
    if not sizes:
        logger.warning("could not read the cache size from /sys; assuming %d bytes", FALLBACK_LLC_BYTES)
        return FALLBACK_LLC_BYTES
    return max(sizes)


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _openblas_libs() -> list[str]:
    """Paths of the OpenBLAS libraries mapped into this process (numpy's own first), from /proc/self/maps.

    scipy ships its own OpenBLAS too; once scipy is imported both are mapped, so prefer numpy.libs."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths: list[str] = []
    for line in maps.splitlines():
        parts = line.split()
        path = parts[-1] if len(parts) >= 6 else ""
        name = Path(path).name
        if "openblas" in name and ".so" in name and path not in paths:
            paths.append(path)
    return sorted(paths, key=lambda p: "numpy.libs" not in p)


def _openblas_function(suffix: str) -> Callable[..., int] | None:
    names = (f"scipy_openblas_{suffix}64_", f"scipy_openblas_{suffix}", f"openblas_{suffix}64_",
             f"openblas_{suffix}")
    for path in _openblas_libs():
        lib = ctypes.CDLL(path)
        for name in names:
            if hasattr(lib, name):
                return getattr(lib, name)  # type: ignore[no-any-return]
    return None


def blas_threads() -> int:
    """Threads OpenBLAS uses now (asked from the library); else its env settings, else one per CPU."""
    get = _openblas_function("get_num_threads")
    if get is not None:
        return int(get())
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


def set_blas_threads(threads: int) -> None:
    """Set OpenBLAS's thread count for this process. On a shared machine one thread is often faster than
    two: a BLAS call with 2 threads waits for whichever thread another process has preempted."""
    if threads < 1:
        raise ValueError(f"threads={threads} must be >= 1")
    setter = _openblas_function("set_num_threads")
    if setter is None:
        raise ValueError(
            "cannot set BLAS threads: numpy's BLAS is not OpenBLAS (set OMP_NUM_THREADS before start)"
        )
    setter(ctypes.c_int(threads))


#: glibc mallopt parameters (malloc.h): M_TRIM_THRESHOLD = -1, M_MMAP_MAX = -4.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_caching_allocator_on = False


def use_caching_allocator() -> bool:
    """Make this process keep freed memory, like the caching allocators real engines use (PyTorch's CUDA/CPU
    caching allocator, vLLM's preallocated buffers): glibc's malloc is told never to serve a block by mmap
    (M_MMAP_MAX = 0) and not to return freed heap to the OS below 2 GiB (M_TRIM_THRESHOLD). Without it every numpy
    temporary above the mmap threshold (128 KiB .. 32 MiB) is a fresh mmap whose pages fault on first touch;
    in this VM that made a (256, 768) float32 `x / (1 + y)` 6x slower than the same call on reused memory
    (1105 vs 171 us) and numpy's RMSNorm 4x slower, a cost no bandwidth or FLOP figure describes. Both the
    calibration and the served model run with it, so the two see the same machine. True when applied (Linux
    glibc); False elsewhere (nothing changes). Process-wide and idempotent."""
    global _caching_allocator_on  # noqa: PLW0603 - one switch per process
    if _caching_allocator_on:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _caching_allocator_on = ok
    return ok


def blas_name() -> str:
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{info.get('name', '?')} {info.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - show_config's layout differs across numpy versions
        return "unknown"
