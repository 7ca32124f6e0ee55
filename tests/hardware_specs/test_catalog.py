"""The hardware catalog: bundled data files, id/alias lookup, user folders, and errors for malformed files."""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roofsim.hardware_specs import HardwareSpec, hardware_ids, list_hardware, load_hardware
from roofsim.hardware_specs.catalog import DATA_DIR, ENV_VAR, hardware_file, hardware_from_dict
from roofsim.hardware_specs.errors import InputError, UnknownNameError

EXPECTED_IDS = [
    "a100-pcie-80gb",
    "a100-sxm-40gb",
    "a100-sxm-80gb",
    "a10g",
    "b200",
    "cpu-generic",
    "gaudi2",
    "gh200",
    "h100-pcie",
    "h100-sxm",
    "h200-sxm",
    "l4",
    "l40s",
    "mi300x",
    "rtx-4090",
    "rtx-pro-6000",
]
H100_TEXT = (DATA_DIR / "h100-sxm.toml").read_text()


@pytest.fixture(autouse=True)
def _no_user_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def _user_copy(text: str, new_id: str, aliases: str = "[]") -> str:
    text = re.sub(r'(?m)^id = ".*"$', f'id = "{new_id}"', text)
    return re.sub(r"(?m)^aliases = \[.*\]$", f"aliases = {aliases}", text)


# ------------------------------------------------------------------------------------------ bundled catalog


def test_bundled_ids_are_exactly_the_listed_devices() -> None:
    assert hardware_ids() == EXPECTED_IDS
    assert [s.id for s in list_hardware()] == EXPECTED_IDS


@pytest.mark.parametrize("hw_id", EXPECTED_IDS)
def test_every_id_loads_from_a_file_named_after_it(hw_id: str) -> None:
    spec = load_hardware(hw_id)
    assert isinstance(spec, HardwareSpec)
    assert spec.id == hw_id
    assert hardware_file(hw_id).name == f"{hw_id}.toml"


@pytest.mark.parametrize(
    ("name", "hw_id"),
    [
        ("H100", "h100-sxm"),
        ("h100_sxm", "h100-sxm"),
        ("H100 SXM5 80GB", "h100-sxm"),
        ("h100-sxm5", "h100-sxm"),
        ("A100-80GB", "a100-sxm-80gb"),
        ("a100", "a100-sxm-80gb"),
        ("a100_sxm4_40gb", "a100-sxm-40gb"),
        ("AMD-MI300X", "mi300x"),
        ("4090", "rtx-4090"),
        ("Gaudi-2", "gaudi2"),
        ("  L40S ", "l40s"),
        # the driver's device names (nvidia-smi, torch.cuda.get_device_name, AIConfigurator's `device` column)
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtx-pro-6000"),
        ("AMD Instinct MI300X", "mi300x"),
        # AIConfigurator system folders
        ("a100_sxm", "a100-sxm-80gb"),
        ("rtx_pro_6000_server", "rtx-pro-6000"),
    ],
)
def test_aliases_resolve_case_and_separator_insensitively(name: str, hw_id: str) -> None:
    assert load_hardware(name).id == hw_id


def test_h100_sxm_dense_datasheet_peaks() -> None:
    h100 = load_hardware("h100-sxm")
    assert h100.peak("bf16") == pytest.approx(989.4e12)
    assert h100.peak("fp8") == pytest.approx(1978.9e12)
    assert h100.memory.capacity_bytes == 81559 * 2**20  # what nvidia-smi reports, not "80GB" = 80e9
    assert h100.interconnect.scaleup_bytes_per_s == 450e9


def test_a100_bf16_peak_and_no_fp8() -> None:
    a100 = load_hardware("a100-sxm-80gb")
    assert a100.peak("bf16") == pytest.approx(312e12)
    with pytest.raises(ValueError, match="no fp8 support") as info:
        a100.peak("fp8")
    assert "bf16" in str(info.value) and "int8" in str(info.value)


@pytest.mark.parametrize(
    ("hw_id", "has", "lacks"),
    [
        ("a100-sxm-40gb", {"bf16", "int8"}, {"fp8", "fp4"}),
        ("h100-sxm", {"bf16", "fp8"}, {"fp4", "int4"}),
        ("b200", {"bf16", "fp8", "fp4"}, set()),
        ("rtx-pro-6000", {"bf16", "fp8", "fp4"}, set()),
        ("l4", {"fp8"}, {"fp4"}),
        ("l40s", {"fp8"}, {"fp4"}),
        ("rtx-4090", {"fp8"}, {"fp4"}),
        ("mi300x", {"bf16", "fp8"}, {"fp4"}),
        ("gaudi2", {"bf16", "fp8"}, {"fp4"}),
        ("a10g", {"bf16"}, {"fp8"}),
        ("cpu-generic", {"fp32"}, {"bf16", "fp8"}),
    ],
)
def test_dtypes_match_the_silicon(hw_id: str, has: set[str], lacks: set[str]) -> None:
    spec = load_hardware(hw_id)
    assert {d for d in has if spec.supports(d)} == has
    assert {d for d in lacks if spec.supports(d)} == set()


@pytest.mark.parametrize(
    ("hw_id", "mib"),
    [("a100-sxm-80gb", 81920), ("a100-sxm-40gb", 40960), ("h100-sxm", 81559), ("h200-sxm", 143771),
     ("b200", 183359), ("l40s", 46068), ("l4", 23034), ("rtx-4090", 24564), ("rtx-pro-6000", 97887)],
)
def test_capacity_is_the_runtime_total_in_mib(hw_id: str, mib: int) -> None:
    assert load_hardware(hw_id).memory.capacity_bytes == mib * 2**20


def test_no_gpu_file_uses_the_datasheet_decimal_gb() -> None:
    """Every GPU's capacity is the runtime's figure (MiB-based), never the marketing "NN GB" = NN e9."""
    for spec in list_hardware():
        if spec.kind == "cpu":
            continue
        cap = spec.memory.capacity_bytes
        assert cap % 2**20 == 0 or spec.vendor == "amd", f"{spec.id}: {cap} is not a whole number of MiB"
        assert cap % 1e9 != 0, f"{spec.id}: {cap} looks like a datasheet 'GB' figure"


def test_rtx_pro_6000_server_edition() -> None:
    rtx = load_hardware("rtx-pro-6000")
    assert (rtx.architecture, rtx.compute.num_units) == ("blackwell", 188)
    assert rtx.peak("fp4") == pytest.approx(1920e12)
    assert rtx.peak("fp8") == pytest.approx(960e12) and rtx.peak("bf16") == pytest.approx(480e12)
    assert rtx.memory.bandwidth_bytes_per_s == pytest.approx(1.597e12)
    assert rtx.interconnect.scaleup_bytes_per_s == pytest.approx(64e9)  # PCIe Gen5, no NVLink
    assert "rtx-pro-6000-blackwell-server-edition" in rtx.sources.compute


def test_h100_ridge_point_is_plausible() -> None:
    h100 = load_hardware("h100")
    ridge = h100.peak("bf16") / h100.memory.bandwidth_bytes_per_s
    assert 250 < ridge < 350


def test_cpu_generic_is_a_placeholder_cpu() -> None:
    cpu = load_hardware("cpu-generic")
    assert (cpu.kind, cpu.architecture) == ("cpu", "cpu")
    assert cpu.peak("fp32") == pytest.approx(2 * 2.5e9 * 32)
    assert "placeholder" in cpu.notes.lower() and "calibration" in cpu.notes.lower()


@pytest.mark.parametrize("hw_id", EXPECTED_IDS)
def test_every_bundled_file_cites_sources_and_has_sane_power_and_price(hw_id: str) -> None:
    spec = load_hardware(hw_id)
    for field, text in spec.sources.model_dump().items():
        assert len(text.strip()) > 10, f"{hw_id}: empty source for {field}"
    assert spec.price_usd_per_hour > 0
    assert spec.power.tdp_w > spec.power.idle_w > 0
    # fp32 is never faster than the 16-bit tensor path where one exists, and lower precisions never slower
    peaks = [spec.peak_flops_per_s.get(d) for d in ("bf16", "fp8", "fp4")]
    present = [p for p in peaks if p is not None]
    assert present == sorted(present)


def test_no_alias_is_shared_between_devices() -> None:
    seen: dict[str, str] = {}
    for spec in list_hardware():
        for name in (spec.id, *spec.aliases):
            assert seen.setdefault(name, spec.id) == spec.id, f"{name} used by {seen[name]} and {spec.id}"


def test_catalog_is_cached() -> None:
    assert load_hardware("h100-sxm") is load_hardware("H100")


# ------------------------------------------------------------------------------------------ unknown names


def test_unknown_name_suggests_the_closest_match() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_hardware("h100-sxn")
    err = info.value
    assert isinstance(err, KeyError)
    assert err.close[0] == "h100-sxm"
    assert "closest: h100-sxm" in str(err)
    assert "'h100-sxn'" in str(err)


def test_unknown_name_lists_known_ids() -> None:
    with pytest.raises(UnknownNameError, match="unknown hardware 'tpu-v5'") as info:
        load_hardware("tpu-v5")
    assert "b200" in info.value.known and "h100" in info.value.known


# ------------------------------------------------------------------------------------------ user folders


def test_user_file_in_env_path_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my-gpu.toml").write_text(_user_copy(H100_TEXT, "my-gpu", '["My GPU 2"]'))
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.toml").write_text(_user_copy(H100_TEXT, "other-gpu"))
    monkeypatch.setenv(ENV_VAR, f"{tmp_path}{os.pathsep}{other}")
    assert load_hardware("my-gpu").id == "my-gpu"
    assert load_hardware("my_gpu_2").id == "my-gpu"
    assert load_hardware("other-gpu").peak("bf16") == pytest.approx(989.4e12)
    assert "my-gpu" in hardware_ids() and "h100-sxm" in hardware_ids()
    assert hardware_file("my-gpu") == tmp_path / "my-gpu.toml"


def test_user_file_clashing_with_a_bundled_id_names_both_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.toml").write_text(H100_TEXT)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(InputError, match="'h100-sxm' is defined twice") as info:
        load_hardware("h100-sxm")
    assert str(DATA_DIR / "h100-sxm.toml") in str(info.value)
    assert str(tmp_path / "mine.toml") in str(info.value)


def test_user_alias_clashing_with_a_bundled_alias_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.toml").write_text(_user_copy(H100_TEXT, "my-h100", '["H100"]'))
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(InputError, match="'h100' of 'my-h100'.*'h100-sxm'"):
        list_hardware()


def test_env_path_that_is_not_a_folder_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(InputError, match="ROOFSIM_HARDWARE_PATH.*nope.*not a folder"):
        hardware_ids()


# ------------------------------------------------------------------------------------------ malformed files


def test_load_by_path(tmp_path: Path) -> None:
    path = tmp_path / "dev.toml"
    path.write_text(_user_copy(H100_TEXT, "dev"))
    assert load_hardware(path).id == "dev"
    assert load_hardware(str(path)).id == "dev"
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        load_hardware(tmp_path / "missing.toml")


def _bad_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = _bad_file(tmp_path, H100_TEXT.replace("tdp_w = 700", "tdp_w = 700 W"))
    with pytest.raises(InputError, match="TOML syntax error") as info:
        load_hardware(path)
    assert str(path) in str(info.value)
    line = 1 + H100_TEXT[: H100_TEXT.index("tdp_w = 700")].count("\n")
    assert f"line {line}" in str(info.value)


def test_missing_field_names_file_and_field(tmp_path: Path) -> None:
    path = _bad_file(tmp_path, re.sub(r"(?m)^l2_bytes = .*\n", "", H100_TEXT))
    with pytest.raises(InputError) as info:
        load_hardware(path)
    assert str(path) in str(info.value)
    assert "memory.l2_bytes: required field is missing" in str(info.value)


def test_negative_bandwidth_names_field_and_constraint(tmp_path: Path) -> None:
    path = _bad_file(
        tmp_path, re.sub(r"(?m)^bandwidth_bytes_per_s = .*$", "bandwidth_bytes_per_s = -3.35e12", H100_TEXT)
    )
    with pytest.raises(InputError) as info:
        load_hardware(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "memory.bandwidth_bytes_per_s: Input should be greater than 0 (got -3350000000000.0)" in msg


def test_misspelt_key_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    path = _bad_file(tmp_path, H100_TEXT.replace("bandwidth_bytes_per_s =", "bandwith_bytes_per_s ="))
    with pytest.raises(InputError) as info:
        load_hardware(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"invalid hardware file {path}:"
    assert len(lines) == 3  # one line per bad field: the unknown key and the now-missing one
    assert any(
        "memory.bandwith_bytes_per_s: unknown field (did you mean 'bandwidth_bytes_per_s'?)" in ln
        for ln in lines
    )
    assert any("memory.bandwidth_bytes_per_s: required field is missing" in ln for ln in lines)


def test_numbers_are_not_coerced_from_strings_or_booleans(tmp_path: Path) -> None:
    path = _bad_file(
        tmp_path, H100_TEXT.replace("tdp_w = 700", 'tdp_w = "700"').replace("idle_w = 70", "idle_w = true")
    )
    with pytest.raises(InputError) as info:
        load_hardware(path)
    assert "power.tdp_w: Input should be a valid number (got '700')" in str(info.value)
    assert "power.idle_w: Input should be a valid number (got True)" in str(info.value)


# ------------------------------------------------------------------------------------------ property test

_BASE = tomllib.loads(H100_TEXT)


def _leaves(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in table.items():
        if isinstance(value, dict):
            out.extend(_leaves(value, (*prefix, key)))
        else:
            out.append(((*prefix, key), value))
    return out


_LEAVES = _leaves(_BASE)
_any_table = st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), min_size=1, max_size=3)


def _wrong_value_for(original: Any) -> st.SearchStrategy[Any]:
    if isinstance(original, bool | str):
        return st.one_of(
            st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers()), _any_table
        )
    if isinstance(original, int | float):
        return st.one_of(st.text(max_size=8), st.booleans(), st.lists(st.integers()), _any_table)
    assert isinstance(original, list)  # aliases: an array of strings
    return st.one_of(
        st.integers(), st.text(max_size=8), st.booleans(), _any_table, st.lists(st.integers(), min_size=1)
    )


@st.composite
def _corrupted(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    path, original = draw(st.sampled_from(_LEAVES))
    data = copy.deepcopy(_BASE)
    table = data
    for key in path[:-1]:
        table = table[key]
    table[path[-1]] = draw(_wrong_value_for(original))
    return ".".join(path), data


@settings(max_examples=150, deadline=None)
@given(_corrupted())
def test_wrong_type_in_any_field_is_an_input_error_naming_it(case: tuple[str, dict[str, Any]]) -> None:
    field, data = case
    with pytest.raises(InputError) as info:
        hardware_from_dict(data, source="fuzz.toml")
    msg = str(info.value)
    assert msg.startswith("invalid hardware file fuzz.toml:")
    assert f"\n  {field}" in msg


# ------------------------------------------------------------------------------------------ docs stay in sync

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hardware.md"


def test_docs_table_lists_every_bundled_device() -> None:
    text = DOCS.read_text()
    for spec in list_hardware():
        assert f"| `{spec.id}` | {spec.name} |" in text, f"docs/hardware.md lacks a table row for {spec.id}"


def test_docs_example_file_is_a_valid_device(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(blocks) == 1
    path = tmp_path / "my-accelerator.toml"
    path.write_text(blocks[0])
    spec = load_hardware(path)
    assert spec.id == "my-accelerator" and spec.peak("fp8") == 800e12


def test_power_cap_lowers_only_the_power_limit() -> None:
    """`<id>@<W>w` = the device capped at W watts (splitwise-sim's h100-80gb-pcap: 70 % of 700 W = 490 W)."""
    base, capped = load_hardware("h100-sxm"), load_hardware("H100@490W")
    assert (capped.id, capped.power.tdp_w, capped.power.idle_w) == ("h100-sxm-cap490w", 490.0, base.power.idle_w)
    assert capped.memory == base.memory and capped.peak_flops_per_s == base.peak_flops_per_s
    assert "490 W" in capped.name and "490 W" in capped.sources.power
    assert load_hardware("h100-sxm@700w") is base
    for bad in ("h100-sxm@50w", "h100-sxm@800w"):
        with pytest.raises(ValueError, match=r"power cap .* must lie above idle_w=70 and at most tdp_w=700"):
            load_hardware(bad)
