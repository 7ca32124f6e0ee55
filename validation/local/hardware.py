"""A HardwareSpec of this machine from what `measure_local` measured (peaks, bandwidth, cache, memory), and
its TOML text (`dumps_hardware`; `load_hardware` reads it back)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from roofsim.hardware_specs.catalog import hardware_from_dict, load_hardware
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.validation.local.machine import meminfo_bytes
from roofsim.validation.local.measure import LocalMeasurements
from roofsim.validation.profiles import toml_text

__all__ = ["dumps_hardware", "machine_hardware"]


def _clock_hz(cpu_model: str) -> float:
    m = re.search(r"@\s*([\d.]+)\s*GHz", cpu_model)
    if m:
        return float(m.group(1)) * 1e9
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) * 1e6
    except OSError:
        pass
    return 2.5e9  # cpu-generic.toml's placeholder clock; only informative, no cost formula reads it


def machine_hardware(meas: LocalMeasurements, hw_id: str = "local-cpu") -> HardwareSpec:
    """A HardwareSpec for this machine: measured fp32 peak and bandwidth; num_units = BLAS threads (the cores a
    GEMM runs on); capacity = MemTotal; last-level cache from /sys; power, price and links from cpu-generic.toml
    (not measurable here, stated in `sources`)."""
    generic = load_hardware("cpu-generic")
    m = meas.machine
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    measured = (f"measured by `roofsim calibrate --local{' --quick' if meas.quick else ''}` on {when}: "
                f"{m.cpu_model}, {m.logical_cpus} logical CPUs, {m.blas} with {m.blas_threads} thread(s)")
    data = {
        "id": hw_id,
        "name": f"This machine ({m.cpu_model}, {m.blas_threads} BLAS thread(s))",
        "vendor": "local",
        "architecture": "cpu",
        "kind": "cpu",
        # fp32: numpy's BLAS (what the numpy forward pass runs); bf16: torch's CPU kernels, when measured
        "peak_flops_per_s": {"fp32": float(meas.peak_fp32_flops_per_s),
                             **{d: float(v) for d, v in meas.torch_peaks.items() if d != "fp32"}},
        "memory": {"capacity_bytes": float(meminfo_bytes("MemTotal")),
                   "bandwidth_bytes_per_s": float(meas.bandwidth_bytes_per_s),
                   "l2_bytes": float(m.llc_bytes)},
        "compute": {"num_units": int(m.blas_threads), "clock_hz": _clock_hz(m.cpu_model)},
        "interconnect": generic.interconnect.model_dump(),
        "power": generic.power.model_dump(),
        "price_usd_per_hour": generic.price_usd_per_hour,
        "sources": {"compute": measured + " (peak = best GEMM FLOP/s, m >= 512; fp32 through numpy's BLAS"
                               + (f", bf16 through torch {meas.torch_version}" if meas.torch_peaks else "") + ")",
                    "memory": measured + " (bandwidth = best STREAM-counted copy/scale/add/triad; capacity = "
                                         "/proc/meminfo MemTotal; cache = /sys cpu0 largest cache)",
                    "interconnect": "copied from cpu-generic.toml: " + generic.sources.interconnect,
                    "power": "copied from cpu-generic.toml (not measured): " + generic.sources.power,
                    "price": "copied from cpu-generic.toml: " + generic.sources.price},
        "notes": "; ".join(meas.notes),
    }
    return hardware_from_dict(data, source="validation.local.hardware.machine_hardware")


def dumps_hardware(hw: HardwareSpec) -> str:
    """The TOML text of a HardwareSpec (load_hardware reads it back to an equal spec; tested)."""
    return toml_text(hw.model_dump(exclude_none=True),
                     ["HardwareSpec of this machine, written by `roofsim calibrate --local` "
                      "(validation/local/hardware.py).",
                      "Its calibration profile is the file next to it named <stem>.calibration.toml."])
