"""Calibration profiles: TOML files holding a fitted Calibration plus the record of its fit (atomic write, checked
read), and `profile_for(hardware)`, which picks the shipped profile of a GPU or transfers its architecture family's.
"""

from __future__ import annotations

import math
import os
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.cost import Calibration

__all__ = ["write_calibration", "atomic_write_text", "read_calibration", "read_profile_meta", "profile_for", "shipped_profiles",
           "PROFILE_DIR", "FAMILY_PROFILE"]

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"

# Architecture family -> the measured GPU whose efficiency curves it borrows (docs/validation.md, "GPUs without
# measurements"). Efficiencies are fractions of the datasheet peak, so they transfer; the target's own peaks,
# bandwidth, SM count and links then set the times.
FAMILY_PROFILE: dict[str, str] = {
    "ampere": "a100-sxm-80gb",
    "ada": "a100-sxm-80gb",  # sm_89 runs Ampere-style mma.sync kernels (no Hopper wgmma/TMA): closest is A100
    "hopper": "h100-sxm",
    "blackwell": "h100-sxm",  # nearest measured generation (async tensor-core pipelines like Hopper's)
    "cdna3": "h100-sxm",  # cross-vendor guess: same HBM3 generation; flagged in the profile's source
    "gaudi2": "a100-sxm-80gb",  # cross-vendor guess: same generation as A100; flagged likewise
}


# ---------------------------------------------------------------------------------------------- writing
def _toml_key(k: str) -> str:
    if k and all(c.isalnum() or c in "_-" for c in k):
        return k
    return '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x, where) for x in v) + "]"
    if hasattr(v, "item"):  # numpy scalar
        return _toml_value(v.item(), where)
    raise TypeError(f"{where}: cannot write {type(v).__name__} value {v!r} to TOML")


def _toml_table(prefix: str, d: Mapping[str, Any], out: list[str]) -> None:
    scalars = [(k, v) for k, v in d.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in d.items() if isinstance(v, Mapping)]
    if prefix:
        out.append(f"\n[{prefix}]")
    for k, v in scalars:
        out.append(f"{_toml_key(k)} = {_toml_value(v, f'{prefix}.{k}')}")
    for k, v in tables:
        _toml_table(f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k), v, out)


def dumps_profile(cal: Calibration, meta: Mapping[str, Any] | None = None) -> str:
    lines = ["# roofsim calibration profile (validation/profiles.py). [calibration] is a model.cost.Calibration;",
             "# [fit] records the measured data it was fitted to and its in-sample and held-out errors."]
    _toml_table("calibration", cal.model_dump(), lines)
    if meta:
        _toml_table("fit", dict(meta), lines)
    return "\n".join(lines) + "\n"


def write_calibration(cal: Calibration, path: Path | str, meta: Mapping[str, Any] | None = None) -> Path:
    """Write `cal` (+ `meta` as the [fit] table) to `path` atomically: a temp file in the same directory is
    written, flushed and fsynced, then os.replace'd, so an interrupted run leaves the old file or none."""
    text = dumps_profile(cal, meta)  # serialise first: a bad meta value fails before any file exists
    return atomic_write_text(path, text)


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write `text` to `path` (parent folders made) through a temp file in the same directory, flushed, fsynced
    and os.replace'd: an interrupted run leaves the old file or none, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a profile/report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


# ---------------------------------------------------------------------------------------------- reading
def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: calibration profile not found") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML ({e})") from e


def read_calibration(path: Path | str) -> Calibration:
    """The Calibration in a profile TOML; InputError naming the file and the field when it is not valid."""
    path = Path(path)
    data = _load(path)
    table = data.get("calibration")
    if not isinstance(table, dict):
        raise InputError(f"{path}: missing [calibration] table (fields: {sorted(Calibration.model_fields)})")
    try:
        return Calibration.model_validate(table)
    except ValidationError as e:
        errs = "; ".join(f"field {'.'.join(str(p) for p in x['loc']) or '(root)'}: {x['msg']}" for x in e.errors())
        raise InputError(f"{path}: invalid [calibration]: {errs}") from None


def read_profile_meta(path: Path | str) -> dict[str, Any]:
    """The [fit] table of a profile (empty when the profile has none)."""
    return dict(_load(Path(path)).get("fit", {}))


# ------------------------------------------------------------------------------------------- selection
def shipped_profiles() -> dict[str, Path]:
    """Profile stem -> path of every profile shipped in validation/profiles/."""
    return {p.stem: p for p in sorted(PROFILE_DIR.glob("*.toml"))}


def profile_for(hardware: HardwareSpec | str, framework: str | None = None) -> Calibration:
    """The calibration to use on `hardware`: its own shipped profile (`<id>-<framework>.toml`, else `<id>.toml`),
    else its architecture family's profile (FAMILY_PROFILE) relabelled for it, else the defaults."""
    hw = load_hardware(hardware) if isinstance(hardware, str) else hardware
    shipped = shipped_profiles()
    for stem in ([f"{hw.id}-{framework}"] if framework else []) + [hw.id]:
        if stem in shipped:
            return read_calibration(shipped[stem])
    donor = FAMILY_PROFILE.get(hw.architecture)
    if donor is None:
        return Calibration(name=f"defaults-for-{hw.id}", hardware=hw.id,
                           source=f"defaults (docs/model.md): no measured profile for architecture "
                                  f"{hw.architecture!r}; families with one: {sorted(FAMILY_PROFILE)}")
    stem = f"{donor}-{framework}" if framework and f"{donor}-{framework}" in shipped else donor
    if stem not in shipped:
        raise InputError(f"shipped profile {stem}.toml is missing from {PROFILE_DIR} (scripts/build_profiles.py)")
    base = read_calibration(shipped[stem])
    guess = " (cross-vendor guess)" if hw.vendor != "nvidia" else ""
    return base.model_copy(update={
        "name": f"{stem}->{hw.id}",
        "hardware": hw.id,
        "source": f"transferred from profile {stem} (architecture {hw.architecture} -> {donor}){guess}: "
                  f"efficiencies are fractions of peak, scaled by the {hw.id} datasheet; {base.source}",
    })
