"""Every file reader under malformed and extreme input (hypothesis, derandomized): only roofsim's own errors, each
naming the file, and no hang; plus a table of the specific reader findings of issue #15."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from roofsim.hardware_specs.catalog import DATA_DIR, load_hardware_file
from roofsim.hardware_specs.errors import InputError, UnknownNameError
from roofsim.hardware_specs.loading import MAX_LINE_CHARS, MAX_NESTING_DEPTH
from roofsim.model.loader import PRESET_DIR, load_model
from roofsim.model.spec import MAX_LAYERS
from roofsim.simulator.config import SimConfig
from roofsim.simulator.traces import read_trace
from roofsim.validation.bench_table import read_bench_table
from roofsim.validation.kernel_tables import read_kernel_tables
from roofsim.validation.logs import read_log
from roofsim.validation.profiles import read_calibration
from tests.robust_inputs import _BENCH, READERS, Reader, file_bytes

# A case that takes this long is a hang: every generated file is < 1 MB and reads in milliseconds, so the bound
# is far from machine speed (the issue's hangs ran for minutes or forever).
CASE_TIMEOUT_S = 20
EXPECTED = (InputError, UnknownNameError, ValidationError)
# Examples per reader: 30 keeps the suite at ~15 s of CPU; ROOFSIM_ROBUST_EXAMPLES=500 for a longer hunt.
EXAMPLES = int(os.environ.get("ROOFSIM_ROBUST_EXAMPLES", "30"))


class Hang(Exception):
    pass


@contextmanager
def time_bound(seconds: int) -> Iterator[None]:
    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"a reader ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _read(reader: Callable[[Path], Any], path: Path) -> BaseException | None:
    """The expected error the reader raised (None if it read the file); anything else propagates and fails."""
    try:
        with time_bound(CASE_TIMEOUT_S):
            reader(path)
    except EXPECTED as e:
        return e
    return None


def _assert_names_file(err: BaseException | None, path: Path) -> None:
    if isinstance(err, InputError | UnknownNameError):
        assert path.name in str(err), f"error does not name {path.name}: {err}"


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.name)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(data=st.data())
def test_reader_survives_malformed_input(reader: Reader, data: st.DataObject) -> None:
    content = data.draw(file_bytes(reader), label="file")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / reader.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        _assert_names_file(_read(reader.read, path), path)


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.name)
def test_reader_seed_is_valid(reader: Reader, tmp_path: Path) -> None:
    """The seeds the suite mutates are read without error, so the mutations start from files that work."""
    path = tmp_path / reader.file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reader.seed, encoding="utf-8")
    result = reader.read(path)
    assert result is not None


# ------------------------------------------------------------------------------------- the findings of issue #15
LLAMA = json.loads((PRESET_DIR / "meta-llama--Meta-Llama-3.1-8B_config.json").read_text())
H100 = (DATA_DIR / "h100-sxm.toml").read_text()
DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_TOML = "x = " + "[" * 100_000 + "]" * 100_000 + "\n"
DEPTH = f"MAX_NESTING_DEPTH={MAX_NESTING_DEPTH}"


def _with(config: dict[str, Any], **fields: Any) -> str:
    return json.dumps({**config, **fields})


CASES: list[tuple[str, str, str | bytes, Callable[[Path], Any], list[str]]] = [
    # (case, file name, content, reader, strings the InputError must contain besides the file name)
    ("deep model config", "config.json", '{"a": ' + DEEP_JSON + "}", load_model, [DEPTH]),
    ("deep hardware file", "hw.toml", DEEP_TOML, load_hardware_file, [DEPTH]),
    ("deep run file", "run.toml", DEEP_TOML, SimConfig.from_toml, [DEPTH]),
    ("dotted-key run file", "run.toml", ".".join(["a"] * 2000) + " = 1\n", SimConfig.from_toml, [DEPTH]),
    ("deep calibration", "cal.toml", DEEP_TOML, read_calibration, [DEPTH]),
    ("deep trace line", "t.jsonl", '{"arrival_s": ' + "[" * 50_000 + "]" * 50_000 + "}\n", read_trace, [DEPTH]),
    ("deep log", "log.json", DEEP_JSON, read_log, [DEPTH]),
    ("long JSONL first line", "t.jsonl",
     '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1, "pad": "' + "x" * 140_000 + '"}\n', read_trace,
     [f"MAX_LINE_CHARS={MAX_LINE_CHARS:,}", ":1:"]),
    ("UTF-16 model config", "config.json", json.dumps(LLAMA).encode("utf-16"), load_model, ["UTF-16"]),
    ("BOM-less UTF-16 config", "config.json", json.dumps(LLAMA).encode("utf-16-le"), load_model, ["UTF-16"]),
    ("Latin-1 trace", "t.csv", "arrival_s,input_tokens,output_tokens\n0,1,1 \u00e9\n".encode("latin-1"), read_trace,
     ["not UTF-8", "line 2"]),
    ("repeated trace column", "t.csv", "arrival_s,input_tokens,output_tokens,input_tokens\n0,1,2,3\n", read_trace,
     ["repeats column(s) ['input_tokens']"]),
    ("header-only trace", "t.csv", "arrival_s,input_tokens,output_tokens\n", read_trace, ["no requests"]),
    ("repeated bench column", "b.csv", _BENCH.splitlines()[0] + ",model\n", read_bench_table,
     ["repeats column(s) ['model']"]),
    ("infinite hardware peak", "hw.toml", H100.replace("bf16 = 989.4e12", "bf16 = inf"), load_hardware_file,
     ["peak_flops_per_s.bf16", "finite"]),
    ("idle above TDP", "hw.toml", H100.replace("idle_w = ", "idle_w = 1000 #"), load_hardware_file,
     ["idle_w=1000", "below tdp_w"]),
    ("1e7 layers", "config.json", _with(LLAMA, num_hidden_layers=10**7), load_model,
     [f"'num_hidden_layers'={10**7} is over MAX_LAYERS={MAX_LAYERS}"]),
    ("1e30 layers", "config.json", _with(LLAMA, num_hidden_layers=10**30), load_model, ["MAX_LAYERS"]),
    ("1e30 hidden size", "config.json", _with(LLAMA, hidden_size=10**30), load_model, ["MAX_MODEL_SIZE"]),
    ("5000-digit integer", "config.json", '{"hidden_size": ' + "1" * 5000 + "}", load_model, ["not valid JSON"]),
]


@pytest.mark.parametrize(("case", "name", "content", "reader", "expected"), CASES, ids=[c[0] for c in CASES])
def test_issue_15_reader_finding(case: str, name: str, content: str | bytes, reader: Callable[[Path], Any],
                                 expected: list[str], tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    with time_bound(CASE_TIMEOUT_S), pytest.raises(InputError) as info:
        reader(path)
    message = str(info.value)
    assert str(path) in message, message
    for text in expected:
        assert text in message, message


def test_bom_bench_table_reads_model_column(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _BENCH.encode())
    table = read_bench_table(path)
    assert [r.model for r in table.rows] == ["meta-llama/Llama-3.1-8B-Instruct"] * 2 and table.problems == ()


def test_header_only_bench_table_and_empty_kernel_folder_read_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text(_BENCH.splitlines()[0] + "\n")
    table = read_bench_table(path)
    assert table.rows == () and table.problems == (f"{path}: no rows: the table has a header but no data "
                                                   "(nothing read)",)
    folder = tmp_path / "kernels"
    folder.mkdir()
    (folder / "README.md").write_text("not a table")
    kernels = read_kernel_tables(folder)
    assert kernels.rows == () and kernels.problems == (
        f"{folder}: no kernel table (.csv or .parquet file) in the folder (nothing read)",)


def test_largest_allowed_model_loads_and_counts_moe_layers_in_closed_form(tmp_path: Path) -> None:
    qwen = json.loads((PRESET_DIR / "Qwen--Qwen3-30B-A3B_config.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(_with(qwen, num_hidden_layers=MAX_LAYERS, decoder_sparse_step=3, max_window_layers=MAX_LAYERS))
    with time_bound(CASE_TIMEOUT_S):
        spec = load_model(path)
    assert spec.num_layers == MAX_LAYERS
    assert spec.moe is not None and (spec.moe.first_dense_layers, spec.moe.layer_freq) == (2, 3)
    assert spec.num_moe_layers == sum(spec.is_moe_layer(i) for i in range(MAX_LAYERS)) == 1365
