"""Shared CLI plumbing: deployment arguments (model, hardware, quantization, layout, calibration) and formatting."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import RoofsimError
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.checkpoint_quant import CheckpointQuant
from roofsim.model.cost import Calibration, CostModel
from roofsim.model.loader import load_checkpoint_quant, load_model
from roofsim.model.quant import quant_for, resolve_quant
from roofsim.model.spec import ModelSpec, ParallelSpec, QuantSpec
from roofsim.simulator.config import ACTIVATION_DTYPES, KV_DTYPES, WEIGHT_DTYPES, ReplicaGroup
from roofsim.simulator.limits import limited
from roofsim.simulator.outfiles import check_output_path
from roofsim.validation.profiles import resolve_calibration

# Exit codes: one meaning each (`roofsim --help` epilog, docs/reliability.md).
EXIT_OK = 0
EXIT_NOTHING_DONE = 1  # the input was read but nothing could be done with it (no row predicted, no row read)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention


class NothingDoneError(RoofsimError):
    """The command read its input but could do nothing with it (exit 1): zero rows read, predicted or written."""


def parse_int(text: str) -> int:
    """An integer flag value; 1e6 and 2.0 are read as the integers they are (1.5 and inf are not integers)."""
    try:
        return int(text)
    except ValueError:
        v = float(text)  # ValueError for text that is no number
        if not v.is_integer():
            raise ValueError(text) from None
        return int(v)


def schema_arg(model: type[BaseModel], field: str, flag: str, parse: Callable[[str], Any] = parse_int
               ) -> Callable[[str], Any]:
    """An argparse `type` that parses a flag and checks it against `model.field`'s constraints and limits
    (simulator/limits.py), so the error names the flag and the limit before any work starts."""
    info = model.model_fields[field]
    inner = getattr(info.annotation, "__args__", (info.annotation,))  # Optional[X] -> X
    adapter: TypeAdapter[Any] = TypeAdapter(Annotated[inner[0], *info.metadata]) if info.metadata else TypeAdapter(
        inner[0])
    return _checked(adapter, flag, parse)


def limit_arg(name: str, flag: str, low: int = 1) -> Callable[[str], int]:
    """An argparse `type` for an int flag in [low, limit `name`] with no schema field behind it."""
    return _checked(TypeAdapter(limited(int, name, ge=low)), flag, parse_int)


def _checked(adapter: TypeAdapter[Any], flag: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def check(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if parse is parse_int else ' number'}"
                                             ) from None
        try:
            return adapter.validate_python(value)
        except ValidationError as err:
            msg = err.errors()[0]["msg"].removeprefix("Value error, ")
            raise argparse.ArgumentTypeError(f"{text}: {msg}") from None
    check.__name__ = flag  # argparse names the type in "invalid <name> value"
    return check


def check_out(path: Path | None, flag: str, force: bool = False, **kw: Any) -> None:
    """check_output_path for an optional output flag (nothing to check when it is not given)."""
    if path is not None:
        check_output_path(path, flag, force, **kw)


def add_deployment_args(p: argparse.ArgumentParser, model_default: str | None = None,
                        hardware_default: str | None = None) -> None:
    g = p.add_argument_group("deployment")
    g.add_argument("--model", default=model_default, required=model_default is None,
                   help="preset name, HF id (meta-llama/Llama-3.1-8B-Instruct) or path to a config.json")
    g.add_argument("--hardware", default=hardware_default, required=hardware_default is None,
                   help="hardware id/alias (see `roofsim list hardware`) or path to a .toml descriptor")
    g.add_argument("--tp", type=limit_arg("MAX_PARALLEL", "--tp"), default=1, help="tensor-parallel degree")
    g.add_argument("--pp", type=limit_arg("MAX_PARALLEL", "--pp"), default=1, help="pipeline-parallel stages")
    g.add_argument("--ep", type=limit_arg("MAX_PARALLEL", "--ep"), default=1, help="expert-parallel degree (MoE)")
    g.add_argument("--attn-dp", type=limit_arg("MAX_PARALLEL", "--attn-dp"), default=1,
                   help="attention data-parallel ranks of a MoE replica, each --tp GPUs (GPUs = attn-dp x tp x pp; "
                        "vLLM --data-parallel-size with expert parallel, SGLang --enable-dp-attention)")
    g.add_argument("--weight-dtype", choices=WEIGHT_DTYPES, default=None,
                   help="default: the checkpoint's format (its quantization_config / hf_quant_config.json), bf16 "
                        "for an unquantised checkpoint; a value overrides the checkpoint's")
    g.add_argument("--activation-dtype", choices=("auto", *ACTIVATION_DTYPES),
                   default="auto", help="auto: the checkpoint's; else fp8 weights -> W8A8 fp8, fp4 -> W4A4, "
                                        "int8/int4 -> weight-only; 16-bit where the GPU lacks the format")
    g.add_argument("--kv-dtype", choices=("auto", *KV_DTYPES), default="auto",
                   help="KV-cache format (auto: the checkpoint's, else bf16 or the 16-bit activation dtype)")
    g.add_argument("--group-size", type=int, default=None,
                   help="weights per scale for int4/int8/fp4 (default: the checkpoint's, else 128; 16 for fp4)")
    g.add_argument("--calibration", type=Path, default=None, help="calibration profile (.toml)")
    g.add_argument("--gpu-memory-utilization", type=schema_arg(ReplicaGroup, "gpu_memory_utilization",
                                                               "--gpu-memory-utilization", float), default=0.9)


SET_HELP = ("override any field: PATH=VALUE, PATH dotted with list indices (replicas.0.tp=2; * = every item), "
            "VALUE a TOML value (2, 2.5, true, [1, 2], {kind=\"iid\", rate=0.7}; a bare word is a string); "
            "PATH=none removes the field (its default applies). Repeatable; applied after the other flags.")


def set_epilog(equivalents: tuple[tuple[str, str], ...]) -> str:
    """The --help epilog table: each former flag and the --set override (or flags) that replace it."""
    width = max(len(old) for old, _ in equivalents)
    return "former flags as --set:\n" + "\n".join(
        f"  {old.ljust(width)}  {new if new.startswith('--') else '--set ' + new}" for old, new in equivalents)


def quant_from_args(args: argparse.Namespace, checkpoint: CheckpointQuant | None = None,
                    hardware: HardwareSpec | None = None) -> QuantSpec:
    """The QuantSpec of --weight-dtype/--activation-dtype/--kv-dtype/--group-size (quant_and_notes)."""
    return quant_and_notes(args, checkpoint, hardware)[0]


def quant_and_notes(args: argparse.Namespace, checkpoint: CheckpointQuant | None = None,
                    hardware: HardwareSpec | None = None) -> tuple[QuantSpec, list[str]]:
    """--weight-dtype/--activation-dtype/--kv-dtype/--group-size over the checkpoint's own format
    (model.quant.resolve_quant): no --weight-dtype = the checkpoint's (bf16 for an unquantised one); each flag
    given overrides its part, and the notes say where every part came from. A --group-size of 128 (the former
    default) counts as not given, so fp4 keeps its own NVFP4 block of 16."""
    group = None if args.group_size in (None, 128) else args.group_size
    weight = None if args.weight_dtype in (None, "checkpoint") else args.weight_dtype
    return resolve_quant(checkpoint, weight, args.kv_dtype, hardware, activation_dtype=args.activation_dtype,
                         group_size=group)


def quant_line(notes: list[str]) -> str | None:
    """The `quantisation: ...` line a command prints when the checkpoint or a flag decided the format (None when
    neither had anything to say: an unquantised checkpoint run as bf16)."""
    return "quantisation: " + "; ".join(notes) if notes else None


def replay_quant(dtype: str, hardware: str) -> QuantSpec:
    """QuantSpec of a log replay: `dtype` weights ('auto' = bf16, or fp32 end to end on hardware without bf16, as
    the numpy engine `roofsim measure` runs), activations and KV following them (model.quant.quant_for)."""
    return quant_for(dtype, hardware=load_hardware(hardware) if dtype == "auto" else None)


def replay_quant_and_notes(dtype: str | None, model: str, hardware: str) -> tuple[QuantSpec, list[str]]:
    """replay_quant, or with no `dtype` the checkpoint's own format of `model` on `hardware` (resolve_quant: an
    unquantised checkpoint runs as 'auto' does), with the notes saying so."""
    if dtype is not None:
        return replay_quant(dtype, hardware), []
    return resolve_quant(load_checkpoint_quant(model), hardware=load_hardware(hardware))


@dataclass(frozen=True)
class Deployment:
    model: ModelSpec
    hardware: HardwareSpec
    quant: QuantSpec
    parallel: ParallelSpec
    calibration: Calibration | None
    quant_notes: tuple[str, ...] = ()  # where the quantisation came from (checkpoint, flags): quant_and_notes

    def cost_model(self) -> CostModel:
        return CostModel(self.model, self.hardware, self.quant, self.parallel, self.calibration)


def deployment_from_args(args: argparse.Namespace) -> Deployment:
    model = load_model(args.model)
    hw = load_hardware(args.hardware)
    par = ParallelSpec(tp=args.tp, pp=args.pp, ep=args.ep, attn_dp=args.attn_dp)
    par.validate_for(model)
    quant, notes = quant_and_notes(args, load_checkpoint_quant(args.model), hw)
    return Deployment(model, hw, quant, par, resolve_calibration(args.calibration, hw)[0], tuple(notes))


def fmt_si(x: float, unit: str = "") -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}{unit}"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"),
                          (1e-6, "u"), (1e-9, "n")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def print_table(rows: list[list[str]], headers: list[str], out: Any = None, left: tuple[int, ...] = ()) -> None:
    """Columns padded to their widest cell; numbers right-aligned except in the columns `left` names."""
    out = out or sys.stdout
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line, file=out)
    print("  ".join("-" * w for w in widths), file=out)
    def numeric(c: object) -> bool:
        t = str(c).lstrip("$+-")
        return bool(t) and (t[0].isdigit() or t in ("inf", "nan"))

    for r in rows:
        print("  ".join(str(c).rjust(w) if i and i not in left and numeric(c) else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))), file=out)


@contextmanager
def progress_bar(enabled: bool, unit: str, desc: str) -> Iterator[Callable[[int, int], None] | None]:
    """A tqdm bar on stderr and the progress(done, total) callback that moves it; None when not enabled (--json)."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm  # noqa: PLC0415 (only for interactive runs)

    bar = tqdm(total=None, unit=unit, file=sys.stderr, desc=desc, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
    try:
        yield progress
    finally:
        bar.close()


def print_notes_and_problems(out: dict[str, Any]) -> None:
    """The notes of a validation result on stdout, its problems (rows not predicted, and why) on stderr."""
    for n in out["notes"]:
        print(f"note: {n}")
    if out["problems"]:
        print(f"{len(out['problems'])} problem(s):", file=sys.stderr)
        for pr in out["problems"]:
            print(f"  {pr}", file=sys.stderr)


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN or infinite float (an undefined statistic: a percentile of no requests) as None,
    numpy scalars as Python numbers and tuples as lists, so json.dumps(allow_nan=False) writes valid JSON."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str | bytes):  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Valid JSON (RFC 8259: no NaN/Infinity) of `obj` through json_safe."""
    return json.dumps(json_safe(obj), indent=indent, sort_keys=False, allow_nan=False, default=float)


def print_json(obj: Any) -> None:
    print(json_text(obj))
