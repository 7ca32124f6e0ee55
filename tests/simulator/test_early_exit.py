"""Early exit: partial-depth costing equals the full step at full depth, the batch-synchronisation rule, KV fill
policies, SkipDecode, CSV exit distributions, reported depth/energy, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.loader import load_model
from roofsim.model.techniques import EarlyExitCoster, HistogramExit, LayerCoster, PerLayerExit, exit_pmf
from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import build_replicas, simulate

L = 32


@pytest.fixture(scope="module")
def cost() -> CostModel:
    return CostModel(load_model("llama-3.1-8b"), load_hardware("h100-sxm"))


def _cfg(ee: dict | None, n: int = 60, rate: float = 6.0) -> SimConfig:
    r = {"model": "llama-3.1-8b", "hardware": "h100-sxm"}
    if ee is not None:
        r["early_exit"] = ee
    return SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": rate},
                     "input": {"kind": "uniform", "low": 50, "high": 800},
                     "output": {"kind": "uniform", "low": 100, "high": 400}, "num_requests": n},
        "replicas": [r], "seed": 11})


def test_partial_step_at_full_depth_equals_cost_model(cost: CostModel) -> None:
    lc = LayerCoster(cost)
    for shape in (BatchShape(decode_seqs=8, decode_tokens=8, decode_ctx_tokens=8000),
                  BatchShape.build(prefill=[(700, 0)], decode_ctx=[100, 900])):
        assert lc.partial_step(shape, L) == pytest.approx(cost.step_seconds_energy(shape), rel=1e-12)
    half = lc.partial_step(BatchShape(decode_seqs=1, decode_tokens=1, decode_ctx_tokens=100), 16)[0]
    full = cost.step_seconds_energy(BatchShape(decode_seqs=1, decode_tokens=1, decode_ctx_tokens=100))[0]
    assert 0.45 * full < half < 0.6 * full  # half the layers; embedding, LM head and overhead stay


def test_sync_costs_the_deepest_token(cost: CostModel) -> None:
    shape = BatchShape(decode_seqs=4, decode_tokens=4, decode_ctx_tokens=4000)
    sync = EarlyExitCoster(cost, np.array([8, 32]), True, "copy", "classifier")
    counts = np.zeros(L + 1, int)
    counts[8], counts[32] = 3, 1
    s_mixed, _, executed = sync.step(shape, counts)
    assert executed == 4 * 32  # one deep token drags the batch to layer 32
    counts_all = np.zeros(L + 1, int)
    counts_all[32] = 4
    assert s_mixed == pytest.approx(sync.step(shape, counts_all)[0], rel=0.02)
    unsync = EarlyExitCoster(cost, np.array([8, 32]), False, "copy", "classifier")
    s_u, _, ex_u = unsync.step(shape, counts)
    assert ex_u == 3 * 8 + 32
    assert s_u < s_mixed
    counts_shallow = np.zeros(L + 1, int)
    counts_shallow[8] = 4
    assert sync.step(shape, counts_shallow)[0] < 0.45 * s_mixed


def test_recompute_costs_more_than_copy_when_compute_bound(cost: CostModel) -> None:
    shape = BatchShape(decode_seqs=512, decode_tokens=512, decode_ctx_tokens=512 * 200)
    counts = np.zeros(L + 1, int)
    counts[16] = 512
    copy = EarlyExitCoster(cost, np.array([16]), True, "copy", "classifier").step(shape, counts)[0]
    rec = EarlyExitCoster(cost, np.array([16]), True, "recompute", "classifier").step(shape, counts)[0]
    lm = EarlyExitCoster(cost, np.array([16]), True, "copy", "lm_head").step(shape, counts)[0]
    assert copy < rec < cost.step_seconds_energy(shape)[0] * 1.05
    assert lm > copy  # a vocab-size exit head per exit point is not free


def test_exit_pmf_forms(tmp_path) -> None:
    pmf = exit_pmf(PerLayerExit(probs=(0.5, 0.5)), 4)
    np.testing.assert_allclose(pmf, [0, 0.5, 0.25, 0, 0.25])
    with pytest.raises(ValueError, match="exit layer 40 exceeds the model's num_layers=32"):
        exit_pmf(HistogramExit(layers=(8, 40), weights=(1, 1)), 32)


def test_simulated_depth_energy_and_speed() -> None:
    base = simulate(_cfg(None)).summary
    hist = {"kind": "histogram", "layers": [12, 20, 32], "weights": [2, 1, 1]}
    sync = simulate(_cfg({"kind": "per_token", "distribution": hist})).summary
    free = simulate(_cfg({"kind": "per_token", "distribution": hist, "batch_sync": False})).summary
    assert sync["ee_mean_requested_depth"] == pytest.approx(19.0, abs=0.4)  # (2*12 + 20 + 32) / 4
    assert free["ee_mean_executed_depth"] == pytest.approx(free["ee_mean_requested_depth"])
    assert sync["ee_sync_loss_layers"] > 8  # batches of ~10 almost always hold a depth-32 token
    assert sync["ee_energy_saved_j"] > 0 and 0 < sync["ee_time_saved_fraction"] < free["ee_time_saved_fraction"]
    assert sync["tpot_s"]["mean"] < base["tpot_s"]["mean"]
    skip = simulate(_cfg({"kind": "skipdecode", "max_layers": 24, "min_layers": 8, "max_position": 1200})).summary
    assert skip["ee_sync_loss_layers"] == 0
    assert skip["ee_time_saved_fraction"] > free["ee_time_saved_fraction"]


def test_csv_exit_distribution_and_bad_rows(tmp_path) -> None:
    p = tmp_path / "exits.csv"
    p.write_text("exit_layer\n8\n8\n16\n32\n")
    s = simulate(_cfg({"kind": "per_token", "distribution": {"kind": "csv", "path": str(p)}}, n=20)).summary
    assert s["ee_mean_requested_depth"] == pytest.approx(16.0, abs=1.0)
    p.write_text("exit_layer\n8\nfoo\n")
    with pytest.raises(InputError, match=r"exits\.csv:3: exit layer 'foo'"):
        build_replicas(_cfg({"kind": "per_token", "distribution": {"kind": "csv", "path": str(p)}}))


def test_bad_early_exit_config() -> None:
    with pytest.raises(ValueError, match="exit layer 33 exceeds the model's num_layers=32"):
        build_replicas(_cfg({"kind": "per_token", "distribution": {"kind": "histogram", "layers": [33],
                                                                   "weights": [1]}}))
    with pytest.raises(ValueError, match="max_layers=40 exceeds the model's num_layers=32"):
        build_replicas(_cfg({"kind": "skipdecode", "max_layers": 40, "min_layers": 8}))
    with pytest.raises(ValidationError, match="min_layers=20 must be <= max_layers=10"):
        _cfg({"kind": "skipdecode", "max_layers": 10, "min_layers": 20})
