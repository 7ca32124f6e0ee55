"""Calibration profiles: TOML files holding a fitted Calibration plus the record of its fit (atomic write, checked
read), `profile_for(hardware)`, which picks the shipped profile of a GPU or transfers its architecture family's, and
`resolve_calibration`, the one rule every front end (CLI, dashboard, Python API) uses to choose a calibration.
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError
from roofsim.hardware_specs.loading import load_toml_file
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.cost import COMM_REF_CLOCK_HZ, FP8_ARCH_PEAK_FRACTION, Calibration
from roofsim.model.uncertainty import E2ETerm, ErrorModel
from roofsim.simulator.config import SimConfig
from roofsim.simulator.planning.spec import PlanSpec

__all__ = ["PROFILE_SCHEMA_VERSION", "write_calibration", "atomic_write_text", "read_calibration", "read_profile_meta",
           "profile_for", "shipped_profiles", "read_error_models", "error_model_for", "resolve_error_model",
           "ERROR_MODEL_KINDS", "read_e2e_term", "store_e2e_term", "e2e_term_for", "resolve_calibration",
           "resolve_config_calibrations", "resolve_config_error_models",
           "resolve_plan_calibrations", "CALIBRATION_KEYWORDS", "PROFILE_DIR", "FAMILY_PROFILE"]

logger = logging.getLogger(__name__)
PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
# Version of the profile layout: 1 = files without `schema_version` (read unchanged: same [calibration] fields);
# 2 = the GPU fit leaves the CPU-only and frozen knobs at their defaults (validation.calibrate FROZEN_GPU_FIELDS);
# 3 = an optional [errors] table of kernel error models (model.uncertainty.ErrorModel, validation.uncertainty),
# and `comm_bw_eff` is the custom all-reduce's fraction of 16 B per block per clock (link-aware comm model; before,
# a fraction of the link bandwidth). Versions 1 and 2 read with their `comm_bw_eff` dropped (its old meaning would
# be misread; the default stands, with a warning); asking them for error models is refused with the command
# that rebuilds them. 4 = an optional [e2e] table: the serving-level error term (model.uncertainty.E2ETerm) that
# estimate/simulate put around their point predictions; version 3 files read unchanged, without one.
# 5 = `gemm_eff_fp8` of a Hopper GPU is a fraction of the architecture's per-tensor fp8 ceiling
# (model.cost.FP8_ARCH_PEAK_FRACTION), not of the datasheet fp8 peak, and `attn_prefill_overhead_s` is in cycles
# given at COMM_REF_CLOCK_HZ, not seconds; an older profile is re-expressed on reading (_v5_migrated), so it prices
# its own GPU's kernels the same.
PROFILE_SCHEMA_VERSION = 5
# [errors.own]: held-out-shape residuals of the profile's own GPU; [errors.transfer]: leave-one-GPU-out residuals,
# the error of the profile on a GPU it borrows it (profile_for's architecture transfer)
ERROR_MODEL_KINDS = ("own", "transfer")

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
def _plain(v: Any) -> Any:
    """Values TOML can hold: numpy scalars as Python numbers, tuples as lists, None-valued keys left out."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalar
        return v.item()
    return v


def toml_text(data: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """`data` as TOML through tomli-w (the project's one TOML writer), after `header` comment lines."""
    try:
        body = tomli_w.dumps(_plain(data))
    except TypeError as e:
        raise TypeError(f"cannot write to TOML: {e}") from None
    return "".join(f"# {line}\n" for line in header) + body


def dumps_profile(cal: Calibration, meta: Mapping[str, Any] | None = None,
                  errors: Mapping[str, ErrorModel] | None = None) -> str:
    data: dict[str, Any] = {"schema_version": PROFILE_SCHEMA_VERSION, "calibration": cal.model_dump()}
    if meta:
        data["fit"] = dict(meta)
    if errors:
        unknown = sorted(set(errors) - set(ERROR_MODEL_KINDS))
        if unknown:
            raise ValueError(f"error model kind(s) {unknown} are not among {list(ERROR_MODEL_KINDS)}")
        data["errors"] = {k: m.model_dump() for k, m in errors.items()}
    return toml_text(data, ["roofsim calibration profile (validation/profiles.py). [calibration] is a "
                            "model.cost.Calibration;", "[fit] records the measured data it was fitted to and its "
                            "in-sample and held-out errors;", "[errors] holds its kernel error models "
                            "(model.uncertainty.ErrorModel, docs/intervals.md)."])


def write_calibration(cal: Calibration, path: Path | str, meta: Mapping[str, Any] | None = None,
                      errors: Mapping[str, ErrorModel] | None = None) -> Path:
    """Write `cal` (+ `meta` as the [fit] table, `errors` as [errors.own] / [errors.transfer]) to `path`
    atomically: a temp file in the same directory is written, flushed and fsynced, then os.replace'd, so an
    interrupted run leaves the old file or none."""
    text = dumps_profile(cal, meta, errors)  # serialise first: a bad meta value fails before any file exists
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
    return load_toml_file(path, what="calibration profile")


def _version(path: Path, data: Mapping[str, Any]) -> int:
    version = data.get("schema_version", 1)  # version 1 had no field; its [calibration] reads unchanged
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= PROFILE_SCHEMA_VERSION:
        raise InputError(f"{path}: schema_version={version!r} is not a profile version this roofsim reads "
                         f"(1..{PROFILE_SCHEMA_VERSION}); rebuild it with scripts/build_profiles.py")
    return version


def read_calibration(path: Path | str) -> Calibration:
    """The Calibration in a profile TOML; InputError naming the file and the field when it is not valid."""
    path = Path(path)
    data = _load(path)
    version = _version(path, data)
    table = data.get("calibration")
    if not isinstance(table, dict):
        raise InputError(f"{path}: missing [calibration] table (fields: {sorted(Calibration.model_fields)})")
    if version < 3 and "comm_bw_eff" in table:
        table = {k: v for k, v in table.items() if k != "comm_bw_eff"}
        logger.warning("%s: schema_version %d profile: its comm_bw_eff (a link-bandwidth fraction then) is not read "
                       "by the current communication model; the default is used (rebuild with "
                       "scripts/build_profiles.py)", path, version)
    if version < 5:
        table = _v5_migrated(path, version, table)
    try:
        return Calibration.model_validate(table)
    except ValidationError as e:
        errs = "; ".join(f"field {'.'.join(str(p) for p in x['loc']) or '(root)'}: {x['msg']}" for x in e.errors())
        raise InputError(f"{path}: invalid [calibration]: {errs}") from None


def _v5_migrated(path: Path, version: int, table: dict[str, Any]) -> dict[str, Any]:
    """A schema < 5 [calibration] re-expressed in version 5's units, so it prices its own GPU's kernels the same:
    `attn_prefill_overhead_s` (then seconds, now cycles given at COMM_REF_CLOCK_HZ) is scaled by the profile GPU's
    clock; a Hopper profile's `gemm_eff_fp8` (then a fraction of the datasheet fp8 peak) is divided by the
    per-tensor fp8 ceiling (FP8_ARCH_PEAK_FRACTION). A profile naming no GPU the catalog knows reads unchanged."""
    hw_id = table.get("hardware")
    if not isinstance(hw_id, str) or not hw_id:
        return table
    try:
        hw = load_hardware(hw_id)
    except (InputError, ValueError):
        return table  # a GPU this catalog does not know: nothing to re-express against
    out = dict(table)
    pre = table.get("attn_prefill_overhead_s")
    if _is_number(pre) and hw.kind == "gpu":
        out["attn_prefill_overhead_s"] = pre * hw.compute.clock_hz / COMM_REF_CLOCK_HZ
    eff, frac = table.get("gemm_eff_fp8"), FP8_ARCH_PEAK_FRACTION.get(hw.architecture)
    if _is_number(eff) and frac is not None:
        if eff / frac > 1.0:
            raise InputError(f"{path}: schema_version {version} profile of {hw_id}: its gemm_eff_fp8 = {eff:g} of "
                             f"the fp8 peak is above the {hw.architecture} per-tensor fp8 ceiling ({frac:.4f} of the "
                             "peak) this roofsim prices fp8 GEMMs at; rebuild it with scripts/build_profiles.py")
        out["gemm_eff_fp8"] = eff / frac
    if out != table:
        logger.info("%s: schema_version %d profile re-expressed in version-%d units: %s", path, version,
                    PROFILE_SCHEMA_VERSION, {k: (table[k], out[k]) for k in out if out[k] != table.get(k)})
    return out


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def read_profile_meta(path: Path | str) -> dict[str, Any]:
    """The [fit] table of a profile (empty when the profile has none)."""
    fit = _load(Path(path)).get("fit", {})
    if not isinstance(fit, dict):
        raise InputError(f"{path}: [fit] must be a table, got {type(fit).__name__}")
    return dict(fit)


def read_error_models(path: Path | str) -> dict[str, ErrorModel]:
    """The [errors] table of a profile: kind ('own', 'transfer') -> ErrorModel. InputError when the profile
    predates error models (schema_version < 3) or has none, naming the command that builds them."""
    path = Path(path)
    data = _load(path)
    version = _version(path, data)
    table = data.get("errors")
    if table is None:
        why = (f"schema_version {version} predates error models (version 3)" if version < 3
               else "it has no [errors] table")
        raise InputError(f"{path}: no kernel error model: {why}; rebuild the profile with scripts/build_profiles.py "
                         f"(make validate) to get intervals")
    if not isinstance(table, dict) or not set(table) <= set(ERROR_MODEL_KINDS):
        raise InputError(f"{path}: [errors] must hold tables among {list(ERROR_MODEL_KINDS)}")
    try:
        return {k: ErrorModel.model_validate(v) for k, v in table.items()}
    except ValidationError as e:
        errs = "; ".join(f"field {'.'.join(str(p) for p in x['loc']) or '(root)'}: {x['msg']}" for x in e.errors())
        raise InputError(f"{path}: invalid [errors]: {errs}") from None


def read_e2e_term(path: Path | str) -> E2ETerm | None:
    """The [e2e] table of a profile (model.uncertainty.E2ETerm), None when it has none (every profile before
    schema_version 4, and one scripts/validate_e2e.py --store-e2e-term has not filled yet)."""
    path = Path(path)
    data = _load(path)
    _version(path, data)
    table = data.get("e2e")
    if table is None:
        return None
    try:
        return E2ETerm.model_validate(table)
    except ValidationError as e:
        errs = "; ".join(f"field {'.'.join(str(p) for p in x['loc']) or '(root)'}: {x['msg']}" for x in e.errors())
        raise InputError(f"{path}: invalid [e2e]: {errs}") from None


def store_e2e_term(path: Path | str, term: E2ETerm) -> Path:
    """Write `term` as the [e2e] table of the profile at `path`, keeping its other tables, at the current
    schema_version (an older file's [calibration] is written as read_calibration migrates it; nothing else
    changes: version 4 only added [e2e])."""
    path = Path(path)
    data = _load(path)
    version = _version(path, data)
    if version < 3:
        raise InputError(f"{path}: schema_version {version} predates error models; rebuild it with "
                         "scripts/build_profiles.py before storing an end-to-end term")
    if version < 5 and isinstance(data.get("calibration"), dict):
        data = {**data, "calibration": _v5_migrated(path, version, data["calibration"])}
    data = {**data, "schema_version": PROFILE_SCHEMA_VERSION, "e2e": term.model_dump(exclude_none=True)}
    text = toml_text(data, ["roofsim calibration profile (validation/profiles.py). [calibration] is a "
                            "model.cost.Calibration;", "[fit] records the measured data it was fitted to and its "
                            "in-sample and held-out errors;", "[errors] holds its kernel error models, [e2e] its "
                            "end-to-end term", "(model.uncertainty.ErrorModel, E2ETerm, docs/intervals.md)."])
    return atomic_write_text(path, text)


def e2e_term_for(hardware: HardwareSpec | str, framework: str | None = None) -> E2ETerm | None:
    """The end-to-end term of the profile profile_for(hardware, framework) reads (its own, else its architecture
    donor's), None when that profile stores none or no measured profile applies."""
    hw = load_hardware(hardware) if isinstance(hardware, str) else hardware
    shipped = shipped_profiles()
    donor = FAMILY_PROFILE.get(hw.architecture)
    stems = [*([f"{hw.id}-{framework}"] if framework else []), hw.id,
             *([f"{donor}-{framework}"] if donor and framework else []), *([donor] if donor else [])]
    return next((read_e2e_term(shipped[s]) for s in stems if s in shipped), None)


def error_model_for(hardware: HardwareSpec | str, framework: str | None = None) -> tuple[ErrorModel, str]:
    """The kernel error model of the calibration profile_for(hardware, framework) picks, and a label: the own
    profile's held-out-shape model ('own'), or the donor profile's leave-one-GPU-out model ('transfer') when the
    profile is borrowed by architecture. InputError when no measured profile applies (model defaults)."""
    hw = load_hardware(hardware) if isinstance(hardware, str) else hardware
    shipped = shipped_profiles()
    for stem in ([f"{hw.id}-{framework}"] if framework else []) + [hw.id]:
        if stem in shipped:
            return read_error_models(shipped[stem])["own"], f"{stem}: held-out shapes"
    donor = FAMILY_PROFILE.get(hw.architecture)
    if donor is None:
        raise InputError(f"no kernel error model for {hw.id}: architecture {hw.architecture!r} has no measured "
                         f"profile to transfer (families with one: {sorted(FAMILY_PROFILE)})")
    stem = f"{donor}-{framework}" if framework and f"{donor}-{framework}" in shipped else donor
    return read_error_models(shipped[stem])["transfer"], f"{stem}->{hw.id}: leave-one-GPU-out"


def resolve_error_model(choice: Calibration | str | Path | None, hardware: HardwareSpec | str,
                        framework: str | None = None) -> tuple[ErrorModel, str]:
    """The error model going with resolve_calibration(choice, hardware): the shipped/transferred profile's
    (error_model_for) for None/'shipped', a profile file's own [errors.own]; refused for 'default' and for a
    Calibration object (neither carries measured errors)."""
    key = None if choice is None or isinstance(choice, Calibration) else str(choice)
    if isinstance(choice, Calibration) or (key == "default" and not Path(key).is_file()):
        raise InputError("intervals need a measured calibration profile ('shipped' or a profile .toml with "
                         "[errors]); the model defaults and a bare Calibration carry no error model")
    if key is None or (key == "shipped" and not Path(key).is_file()):
        return error_model_for(hardware, framework)
    models = read_error_models(Path(key))
    kind = "own" if "own" in models else "transfer"
    return models[kind], f"{key}: {models[kind].residuals}"


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


CALIBRATION_KEYWORDS = ("shipped", "default")


def resolve_calibration(choice: Calibration | str | Path | None, hardware: HardwareSpec | str | None,
                        framework: str | None = None) -> tuple[Calibration, str]:
    """The one calibration rule of every command, the dashboard and the API, and a label saying what was used.

    None or "shipped": the GPU's shipped profile (per engine when `framework` names one with a profile), else its
    architecture family's transferred profile, else the defaults (profile_for); "default": the model defaults; a
    Calibration: itself; anything else: a profile .toml path. `hardware` may be None only for those last three.
    """
    if isinstance(choice, Calibration):
        return choice, f"{choice.name} (given)"
    key = None if choice is None else str(choice)
    if key == "default" and not Path(key).is_file():
        return Calibration(), "model defaults (--calibration default)"
    if key is None or (key == "shipped" and not Path(key).is_file()):
        if hardware is None:
            raise ValueError("calibration 'shipped' needs the hardware whose profile to use (got hardware=None)")
        hw = load_hardware(hardware) if isinstance(hardware, str) else hardware
        cal = profile_for(hw, framework)
        if cal.name.startswith("defaults-for-"):
            how = "model defaults: no shipped or transferable profile"
        elif "->" in cal.name:
            how = "transferred by architecture"
        else:
            how = "shipped profile"
        return cal, f"{cal.name} ({how})"
    cal = read_calibration(Path(key))
    return cal, f"{cal.name} (file {key})"


def resolve_plan_calibrations(spec: PlanSpec) -> tuple[PlanSpec, list[str]]:
    """`spec` with a calibration for every GPU it searches that has none yet (resolve_calibration's default: the
    GPU's shipped or transferred profile), keyed by catalog id, and one label per GPU."""
    cals, labels = dict(spec.calibrations), []
    for name in spec.hardware:
        hw = load_hardware(name)
        if hw.id in cals:
            labels.append(f"{hw.id}: {cals[hw.id].name} (set in the plan)")
            continue
        cals[hw.id], label = resolve_calibration(None, hw)
        labels.append(f"{hw.id}: {label}")
    return spec.model_copy(update={"calibrations": cals}), list(dict.fromkeys(labels))


def resolve_config_error_models(cfg: SimConfig, choice: str | Path | None = None
                                ) -> tuple[list[ErrorModel], list[str]]:
    """The kernel error model of every replica group of `cfg` (resolve_error_model(choice, its hardware)) and one
    'hardware: label' per distinct source: what an ensemble of `cfg` draws from."""
    picked = [resolve_error_model(choice, g.hardware) for g in cfg.replicas]
    labels = [f"{g.hardware}: {label}" for g, (_, label) in zip(cfg.replicas, picked, strict=True)]
    return [em for em, _ in picked], list(dict.fromkeys(labels))


def resolve_config_calibrations(cfg: SimConfig) -> tuple[SimConfig, list[str]]:
    """`cfg` with every replica group that names no calibration given its GPU's by resolve_calibration (the
    simulator cannot import validation/, so front ends resolve before simulating), and one label per group."""
    groups, labels = [], []
    for i, g in enumerate(cfg.replicas):
        if g.calibration is None:
            cal, label = resolve_calibration(None, g.hardware)
            g = g.model_copy(update={"calibration": cal})
        else:
            label = f"{g.calibration.name} (set in the config)"
        groups.append(g)
        labels.append(f"replicas[{i}] {g.hardware}: {label}")
    return cfg.model_copy(update={"replicas": tuple(groups)}), labels
