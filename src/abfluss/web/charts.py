"""Charts as plotly figures rendered to JSON on the server; ``static/charts.js`` draws them with the
plotly.js that the installed ``plotly`` package bundles. No hand-drawn SVG."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import plotly.graph_objects as go

_LAYOUT = dict(margin=dict(l=60, r=20, t=30, b=40), height=320, template="plotly_white",
               legend=dict(orientation="h", y=-0.2))


def plotly_js() -> Path:
    """plotly.min.js as shipped inside the ``plotly`` Python package (no CDN)."""
    import plotly
    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


def host_outflow(data: dict) -> str:
    """Bytes out per hour, with the host's baseline median and threshold when it has history."""
    hours = [r["hour"] for r in data["hours"]]
    fig = go.Figure(go.Bar(x=hours, y=[r["bytes_out"] for r in data["hours"]], name="bytes out per hour"))
    b = data["baseline"]
    if b and hours:
        span = [hours[0] - timedelta(minutes=30), hours[-1] + timedelta(minutes=30)]
        fig.add_trace(go.Scatter(x=span, y=[b["median"]] * 2, mode="lines", name="baseline median"))
        fig.add_trace(go.Scatter(x=span, y=[b["threshold"]] * 2, mode="lines", name="baseline threshold",
                                 line=dict(dash="dash")))
    fig.update_layout(**_LAYOUT, yaxis_title="bytes out", xaxis_title="hour (UTC)")
    return fig.to_json()


def coverage_timeline(rows: list[dict]) -> str:
    """Each sensor's span as a bar, its largest gaps on top of it."""
    fig = go.Figure()
    for r in rows:
        if r["first_seen"] is None:
            continue
        fig.add_trace(go.Scatter(x=[r["first_seen"], r["last_seen"]], y=[r["sensor"]] * 2, mode="lines",
                                 line=dict(width=14, color="#2a7f62"), name=f"{r['sensor']} seen",
                                 showlegend=False))
        for g in r["largest_gaps"]:
            fig.add_trace(go.Scatter(x=[g["start"], g["end"]], y=[r["sensor"]] * 2, mode="lines",
                                     line=dict(width=14, color="#c0392b"),
                                     name=f"gap {g['minutes']} min", showlegend=False))
    fig.update_layout(**{**_LAYOUT, "height": 120 + 40 * len(rows)}, xaxis_title="time (UTC)")
    return fig.to_json()
