"""The engine table (simulator/engines.py): lookup by name and version range, GPU- and model-dependent defaults,
clear errors for unknown engines/versions, and the replica-group `engine` field (explicit settings win, TOML
round trip keeps the engine)."""

from __future__ import annotations

import tomllib

import pytest

from roofsim.simulator.config import ReplicaGroup, SimConfig, VLLMScheduler, config_dict
from roofsim.simulator.engines import (
    ENGINES,
    UnknownEngineError,
    engine_profile,
    engine_row,
    sglang_defaults,
    trtllm_bench_limits,
)

LONG, SHORT = 131072, 8192  # Llama-3.1 (128k) and Llama-3 (8k) context lengths


@pytest.mark.parametrize(("spec", "row"), [
    ("vllm==0.4.2", "vllm<0.6"), ("vllm==0.5.4", "vllm<0.6"), ("vllm==0.6.3.post1", "vllm>=0.6,<0.7"),
    ("vllm==0.7.3", "vllm>=0.7,<0.8"), ("vllm==0.8.3", "vllm>=0.8,<0.9"), ("vllm==0.10", "vllm>=0.9,<1.0"),
    ("vllm==0.18.0", "vllm>=0.9,<1.0"), ("vllm", "vllm>=0.9,<1.0"), ("VLLM == 0.9.2", "vllm>=0.9,<1.0"),
    ("trtllm==0.17.0", "trtllm>=0.11,<1.0"), ("trtllm==1.0", "trtllm>=1.0,<2.0"),
    ("trtllm==1.0.0rc3", "trtllm>=1.0,<2.0"),  # a release candidate counts as its release
    ("tensorrt-llm==1.2.0", "trtllm>=1.0,<2.0"), ("trtllm", "trtllm>=1.0,<2.0"),
    ("sglang", "sglang>=0.4,<1.0"), ("sglang==0.5.1.post1", "sglang>=0.4,<1.0"),
    ("roofsim-default", "roofsim-default"),
])
def test_version_ranges_pick_the_row(spec: str, row: str) -> None:
    assert engine_row(spec).name == row


@pytest.mark.parametrize(("spec", "match"), [
    ("vllm==1.2", r"unknown engine version 'vllm==1.2'.*Known engine versions: vllm<0.6"),
    ("sglang==0.3", r"unknown engine version 'sglang==0.3'.*sglang>=0.4,<1.0"),
    ("vlm", r"unknown engine 'vlm'; closest: vllm.*Known engines: .*roofsim-default.*sglang.*trtllm.*vllm"),
    ("vllm==abc", r"'abc' is not a version"),
    ("roofsim-default==1", r"has no versions"),
])
def test_unknown_engine_or_version_names_it_and_lists_the_known(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        engine_profile(spec, "h100-sxm", max_model_len=LONG)


def test_unknown_engine_is_a_key_error_too() -> None:
    with pytest.raises(KeyError):
        engine_row("nope")
    assert issubclass(UnknownEngineError, ValueError)


def test_vllm_v0_depends_on_the_context_length() -> None:
    """vLLM V0 switches chunked prefill on by itself for > 32k-context models (512 tokens before 0.7, 2048 from
    0.7); otherwise its budget is max(max_model_len, 2048) without chunking."""
    p = engine_profile("vllm==0.5.4", "h100-sxm", max_model_len=LONG)
    assert (p.scheduler, p.chunk_size, p.max_batched_tokens, p.max_num_seqs) == ("sarathi", 512, 512, 256)
    assert engine_profile("vllm==0.7.3", "h100-sxm", max_model_len=LONG).chunk_size == 2048
    p = engine_profile("vllm==0.6.0", "h100-sxm", max_model_len=SHORT)
    assert (p.scheduler, p.chunk_size, p.max_batched_tokens) == ("vllm", None, 8192)
    assert engine_profile("vllm==0.5", max_model_len=1024).max_batched_tokens == 2048
    assert not p.prefix_caching and p.gpu_memory_utilization == 0.9
    with pytest.raises(ValueError, match="context length"):
        engine_profile("vllm==0.5.4", "h100-sxm")


@pytest.mark.parametrize(("hw", "tokens", "seqs"), [("h100-sxm", 8192, 1024), ("a100-sxm-80gb", 2048, 256),
                                                     ("l40s", 2048, 256)])
def test_vllm_v1_depends_on_the_gpu_class(hw: str, tokens: int, seqs: int) -> None:
    p = engine_profile("vllm==0.10.1", hw)
    assert (p.scheduler, p.chunk_size, p.max_batched_tokens, p.max_num_seqs, p.prefix_caching) == (
        "sarathi", tokens, tokens, seqs, True)
    assert engine_profile("vllm==0.8.3", hw).max_batched_tokens == 2048  # 0.8.x: 2048/256 on every GPU
    with pytest.raises(ValueError, match="depends on the GPU"):
        engine_profile("vllm")


def test_trtllm_and_sglang_profiles() -> None:
    t = engine_profile("trtllm==1.0", "h100-sxm")
    assert (t.scheduler, t.chunk_size, t.max_batched_tokens, t.max_num_seqs, t.prefix_caching) == (
        "orca", None, 8192, 2048, True)
    assert not engine_profile("trtllm==0.17", "h100-sxm").prefix_caching  # 0.x executor: block reuse off
    # 1.x (PyTorch backend) runs the overlap scheduler by default; the 0.x C++ executor row does not
    assert t.overlap and t.scheduler_config()["overlap"] is True and "overlap scheduler" in t.summary()
    assert not engine_profile("trtllm==0.17", "h100-sxm").scheduler_config()["overlap"]
    assert "overlap" not in engine_profile("vllm", "h100-sxm").scheduler_config()
    # both TRT-LLM rows admit under GUARANTEED_NO_EVICT (KV reserved to completion); vLLM preempts instead
    assert all(engine_profile(v, "h100-sxm").scheduler_config()["no_evict"] is True
               for v in ("trtllm==1.0", "trtllm==0.17"))
    assert "no eviction" in t.summary() and "no_evict" not in engine_profile("vllm", "h100-sxm").scheduler_config()
    s = engine_profile("sglang", "h100-sxm", max_model_len=LONG)
    assert (s.scheduler, s.chunk_size, s.max_batched_tokens, s.prefix_caching) == ("vllm", 8192, LONG, True)
    assert engine_profile("sglang", "h100-sxm", max_model_len=LONG, longest_prompt=1000).max_batched_tokens == 8192
    # server_args.py tiers: 80 GiB -> 8192 chunk, reserve 9.5 + tp*pp/2 GiB; 48 GB L40S -> 4096
    assert sglang_defaults("h100-sxm") == (8192, 0.874) and sglang_defaults("l40s")[0] == 4096
    assert s.gpu_memory_utilization == 0.874


def test_every_row_cites_its_sources() -> None:
    for row in ENGINES:
        assert row.sources and all(src for _, src in row.sources), row.name


def test_trtllm_bench_limits_follow_the_tuning_heuristic() -> None:
    """tuning.py: an 8B bf16 model on one 80 GB GPU (KV 128 KiB/token), isl=osl=1024: ~246 sequences fit ->
    batch rounded up to 32s = 256, tokens 492 -> the 2048 floor; a small KV per token hits the 4096-request cap
    (tokens 4096 x 2 = 8192); long sequences hit the batch floor of 64."""
    assert trtllm_bench_limits(8.03e9, 2, 131072, "h100-sxm", 1, 1, 1024, 1024) == (256, 2048)
    assert trtllm_bench_limits(8.03e9, 2, 32768, "h100-sxm", 1, 1, 128, 128) == (4096, 8192)
    assert trtllm_bench_limits(8.03e9, 2, 131072, "h100-sxm", 1, 1, 30000, 2000) == (64, 2048)
    with pytest.raises(ValueError, match="do not fit"):
        trtllm_bench_limits(70e9, 2, 327680, "l40s", 1, 1, 1024, 1024)


# ---- the replica-group field --------------------------------------------------------------------------------
def _group(**kw) -> ReplicaGroup:
    return ReplicaGroup(model="llama-3.1-8b", hardware="h100-sxm", **kw)


def test_engine_fills_the_settings_not_given() -> None:
    g = _group(engine="vllm==0.10")
    assert (g.scheduler.kind, g.scheduler.max_batched_tokens, g.scheduler.max_num_seqs) == ("sarathi", 8192, 1024)
    assert g.scheduler.chunk_size == 8192 and g.prefix_caching and g.gpu_memory_utilization == 0.9
    g = _group(engine="vllm==0.5.4")  # llama-3.1-8b has a 128k context: V0 chunks by itself
    assert (g.scheduler.kind, g.scheduler.chunk_size) == ("sarathi", 512)
    assert _group(engine="sglang").gpu_memory_utilization == 0.874
    assert _group() == _group(engine=None) and _group().scheduler == VLLMScheduler()  # no engine: roofsim-default
    d = _group(engine="roofsim-default")
    assert d.scheduler == VLLMScheduler() and d.gpu_memory_utilization == 0.9 and not d.prefix_caching


def test_explicit_settings_win_over_the_engine() -> None:
    g = _group(engine="vllm==0.10", scheduler={"max_num_seqs": 64}, prefix_caching=False)
    assert (g.scheduler.kind, g.scheduler.max_num_seqs, g.scheduler.max_batched_tokens) == ("sarathi", 64, 8192)
    assert not g.prefix_caching
    g = _group(engine="vllm==0.10", scheduler=VLLMScheduler(max_num_seqs=8), gpu_memory_utilization=0.5)
    # another kind keeps the engine's values of the fields it has
    assert (g.scheduler.kind, g.scheduler.max_num_seqs, g.scheduler.max_batched_tokens) == ("vllm", 8, 8192)
    assert g.gpu_memory_utilization == 0.5


def test_bad_engine_is_a_field_error() -> None:
    with pytest.raises(Exception, match=r"replicas.0: engine 'vllm==3': unknown engine version"):
        SimConfig.from_dict({"workload": {"kind": "named", "name": "conversation"},
                             "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "engine": "vllm==3"}]})


def test_toml_round_trip_keeps_the_engine_and_only_the_overrides() -> None:
    cfg = SimConfig(workload={"kind": "named", "name": "conversation"},
                    replicas=(_group(engine="vllm==0.10", scheduler={"max_num_seqs": 64}),
                              _group(engine="sglang", count=2), _group()))
    text = cfg.to_toml()
    back = SimConfig.model_validate(tomllib.loads(text))
    assert back == cfg
    groups = config_dict(cfg)["replicas"]
    assert groups[0]["engine"] == "vllm==0.10" and groups[0]["scheduler"] == {"max_num_seqs": 64}
    assert "scheduler" not in groups[1] and "gpu_memory_utilization" not in groups[1]
    assert groups[2]["scheduler"]["kind"] == "vllm" and "engine" not in groups[2]
    # the file states intent: a different engine in it takes effect
    groups[1]["engine"] = "vllm==0.10"
    assert SimConfig.model_validate({**config_dict(cfg), "replicas": groups}).replicas[1].scheduler.kind == "sarathi"


def test_docs_page_holds_the_generated_table() -> None:
    """docs/engines.md shows the table generated from ENGINES (regenerate the part after '## The table' with
    engine_table_markdown() when a row changes)."""
    from pathlib import Path  # noqa: PLC0415

    from roofsim.simulator.engines import engine_table_markdown  # noqa: PLC0415

    page = (Path(__file__).resolve().parents[2] / "docs" / "engines.md").read_text(encoding="utf-8")
    assert page.split("## The table\n\n", 1)[1] == engine_table_markdown()
