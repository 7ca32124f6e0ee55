"""One calibration rule (validation.profiles.resolve_calibration): shipped per GPU and engine, transferred by
architecture family, 'default' = model defaults, a path = that file; and the front ends that use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from roofsim.model.cost import Calibration
from roofsim.simulator.config import SimConfig
from roofsim.validation.profiles import (
    PROFILE_DIR,
    read_calibration,
    resolve_calibration,
    resolve_config_calibrations,
)


def test_shipped_profile_of_a_measured_gpu_per_engine() -> None:
    cal, label = resolve_calibration(None, "h100-sxm", "vllm")
    assert cal == read_calibration(PROFILE_DIR / "h100-sxm-vllm.toml")
    assert label == f"{cal.name} (shipped profile)"
    assert resolve_calibration("shipped", "H100")[0] == read_calibration(PROFILE_DIR / "h100-sxm.toml")


def test_unmeasured_gpu_gets_its_architecture_familys_profile() -> None:
    cal, label = resolve_calibration(None, "NVIDIA RTX PRO 6000 Blackwell Server Edition")
    assert cal.hardware == "rtx-pro-6000" and cal.name == "h100-sxm->rtx-pro-6000"
    assert label.endswith("(transferred by architecture)")


def test_default_keyword_and_paths() -> None:
    assert resolve_calibration("default", "h100-sxm") == (Calibration(), "model defaults (--calibration default)")
    assert resolve_calibration(Path("default"), None)[0] == Calibration()  # argparse type=Path spelling
    path = PROFILE_DIR / "a100-sxm-80gb.toml"
    cal, label = resolve_calibration(str(path), "h100-sxm")  # a file wins over the GPU
    assert cal == read_calibration(path) and label.endswith(f"(file {path})")
    with pytest.raises(ValueError, match="needs the hardware"):
        resolve_calibration(None, None)


def test_config_groups_without_a_calibration_get_their_gpus() -> None:
    cfg = SimConfig.model_validate({"workload": {"kind": "named", "name": "conversation"}, "replicas": [
        {"model": "llama-3.1-8b", "hardware": "l40s"},
        {"model": "llama-3.1-8b", "hardware": "h100-sxm", "calibration": {"name": "mine"}}]})
    out, labels = resolve_config_calibrations(cfg)
    assert out.replicas[0].calibration == resolve_calibration(None, "l40s")[0]
    assert out.replicas[1].calibration == cfg.replicas[1].calibration
    assert labels == ["replicas[0] l40s: a100-sxm-80gb->l40s (transferred by architecture)",
                      "replicas[1] h100-sxm: mine (set in the config)"]


def test_estimate_prints_the_profile_it_used(capsys: pytest.CaptureFixture[str]) -> None:
    from roofsim.app.cli import main  # noqa: PLC0415

    assert main(["estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm"]) == 0
    assert "calibration: h100-sxm (shipped profile)" in capsys.readouterr().out
    assert main(["estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--calibration", "default"]) == 0
    assert "calibration: model defaults (--calibration default)" in capsys.readouterr().out


# --------------------------------------------------------------- readers resolve GPUs through the catalog (issue 13)
def _gemm_table(root: Path, system: str, device: str) -> Path:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    path = root / system / "gemm" / "vllm" / "0.1" / "gemm_perf.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"device": [device], "gemm_dtype": ["bfloat16"], "m": [16], "n": [4096], "k": [4096],
                             "kernel_source": ["x"], "latency": [0.05]}), path)
    return path


def test_aiconfigurator_reader_takes_any_system_the_catalog_knows(tmp_path: Path) -> None:
    from roofsim.hardware_specs.errors import InputError  # noqa: PLC0415
    from roofsim.validation.kernel_tables import read_aiconfigurator, read_aiconfigurator_table  # noqa: PLC0415

    _gemm_table(tmp_path, "rtx_pro_6000_server", "NVIDIA RTX PRO 6000 Blackwell Server Edition")
    rows = read_aiconfigurator(tmp_path).rows
    assert [(r.hardware, r.op, r.measured_s) for r in rows] == [("rtx-pro-6000", "gemm", pytest.approx(5e-5))]
    odd = _gemm_table(tmp_path, "my_new_gpu", "NVIDIA Z9000")
    with pytest.raises(InputError, match="'my_new_gpu' is not a GPU the hardware catalog describes"):
        read_aiconfigurator_table(odd)
    assert [r.hardware for r in read_aiconfigurator_table(odd, hardware="l40s").rows] == ["l40s"]
    with pytest.raises(InputError, match="--hardware 'z9000' is not a GPU"):
        read_aiconfigurator_table(odd, hardware="z9000")


def test_every_aiconfigurator_table_in_the_data_is_listed(shared_data: Path) -> None:
    from roofsim.validation.kernel_tables import _AIC_HANDLERS, AIC_TABLE_FAMILIES  # noqa: PLC0415

    stems = {p.stem for p in (shared_data / "kernels" / "aiconfigurator").glob("*/*/*/*/*.parquet")}
    assert stems and stems <= set(AIC_TABLE_FAMILIES)
    for stem, (_family, status) in AIC_TABLE_FAMILIES.items():
        assert status == "predicted" or status.startswith(("read, not predicted: ", "not read: "))
        assert (stem in _AIC_HANDLERS) == (not status.startswith("not read"))
