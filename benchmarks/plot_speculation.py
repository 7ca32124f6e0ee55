"""Figures of docs/reproductions.md: speculative speedup vs batch size for two acceptance rates, and early-exit
decode speedup vs mean exit depth with and without batch synchronisation. Writes both onto one page,
docs/figures/speculation-early-exit.html (plotly.js from its CDN)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.loader import load_model
from roofsim.model.techniques import EarlyExitCoster, SpeculativeConfig, SpeculativeCoster

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def speculative_figure(model: str = "llama-3.1-8b", hw: str = "h100-sxm", context: int = 512) -> go.Figure:
    cost = CostModel(load_model(model), load_hardware(hw))
    fig = go.Figure()
    for a in (0.6, 0.85):
        for kind in ("eagle", "ngram"):
            spec = SpeculativeConfig(drafter={"kind": kind}, acceptance={"kind": "iid", "rate": a}, k=4)
            sc = SpeculativeCoster(cost, spec)
            fig.add_trace(go.Scatter(x=BATCHES, y=[sc.speedup(b, context) for b in BATCHES], mode="lines+markers",
                                     name=f"{kind}, acceptance {a}, k=4"))
    fig.add_hline(y=1.0, line_dash="dot")
    fig.update_layout(title=f"Speculative decoding speedup vs batch size ({model} on {hw}, context {context})",
                      xaxis={"title": "decoding sequences in the batch", "type": "log"},
                      yaxis={"title": "decode speedup over plain decoding"})
    return fig


def early_exit_figure(model: str = "llama-3.1-8b", hw: str = "h100-sxm", batch: int = 32, context: int = 512,
                      seed: int = 0) -> go.Figure:
    """Per-token exits from a two-point mixture (shallow layer e, or the full depth): the mean depth moves with
    the mixture weight; synchronised batches pay for the deepest token, unsynchronised ones for each token."""
    cost = CostModel(load_model(model), load_hardware(hw))
    L = cost.model.num_layers
    rng = np.random.default_rng(seed)
    shape = BatchShape(decode_seqs=batch, decode_tokens=batch, decode_ctx_tokens=batch * context)
    full = cost.step_seconds(shape)
    fig = go.Figure()
    for sync in (True, False):
        xs, ys = [], []
        for e in (4, 8, 12, 16, 20, 24, 28):
            coster = EarlyExitCoster(cost, np.array([e, L]), sync, "copy", "classifier")
            for p_shallow in (0.5, 0.9, 0.99):
                d = np.where(rng.random(batch) < p_shallow, e, L)
                counts = np.bincount(d, minlength=L + 1)
                xs.append(float(d.mean()))
                ys.append(full / coster.step(shape, counts)[0])
        order = np.argsort(xs)
        fig.add_trace(go.Scatter(x=np.asarray(xs)[order], y=np.asarray(ys)[order], mode="markers",
                                 name="batch-synchronised (deepest token)" if sync else "tokens leave at their exit"))
    # SkipDecode-style: one depth for the batch
    xs = list(range(4, L + 1, 2))
    lc = EarlyExitCoster(cost, np.empty(0), True, "copy", "classifier")
    ys = []
    for d in xs:
        counts = np.zeros(L + 1, int)
        counts[d] = batch
        ys.append(full / lc.step(shape, counts)[0])
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="one depth per batch (SkipDecode)"))
    fig.add_trace(go.Scatter(x=xs, y=[L / d for d in xs], mode="lines", line={"dash": "dot"}, name="L / depth"))
    fig.update_layout(title=f"Early-exit decode speedup vs mean exit depth ({model} on {hw}, batch {batch})",
                      xaxis={"title": "mean requested exit depth (layers)"},
                      yaxis={"title": "decode step speedup over full depth", "type": "log"})
    return fig


def main() -> int:
    # One page for both figures (fragments, plotly.js loaded once): one file per figure repeated the same page head.
    figs = {"speculative-speedup-vs-batch": speculative_figure(), "early-exit-speedup-vs-depth": early_exit_figure()}
    body = "\n".join(fig.to_html(full_html=False, include_plotlyjs="cdn" if i == 0 else False, div_id=name,
                                 default_height=520) for i, (name, fig) in enumerate(figs.items()))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "speculation-early-exit.html"
    path.write_text('<!doctype html><html><head><meta charset="utf-8"><title>Speculative decoding and early exit'
                    f"</title></head><body>\n{body}\n</body></html>\n", encoding="utf-8")
    sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
