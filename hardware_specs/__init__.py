"""Accelerator descriptors: the HardwareSpec schema, the bundled catalog and the loader."""

from hardware_specs.spec import DTYPE_BYTES, DTYPES, HardwareSpec

__all__ = ["DTYPE_BYTES", "DTYPES", "HardwareSpec"]
