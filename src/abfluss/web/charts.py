"""Charts as plotly figures rendered to JSON on the server; ``static/charts.js`` draws them with the
plotly.js that the installed ``plotly`` package bundles. No hand-drawn SVG."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

import plotly.graph_objects as go

_LAYOUT = dict(margin=dict(l=60, r=20, t=30, b=40), height=320, template="plotly_white",
               legend=dict(orientation="h", y=-0.2))


def plotly_js() -> Path:
    """plotly.min.js as shipped inside the ``plotly`` Python package (no CDN)."""
    import plotly
    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


@lru_cache(maxsize=1)
def plotly_css() -> str:
    """The style rules plotly.js would insert as an inline ``<style>`` (which the CSP forbids),
    taken from the installed bundle and served as a stylesheet. The page links it with
    ``id="plotly.js-style-global" class="no-inline-styles"``, plotly.js's own signal that its
    rules are already there (plotly.js PR #7109)."""
    js = plotly_js().read_text(encoding="utf-8", errors="replace")
    start = js.find('{"X,X div":')
    if start < 0:
        return ""
    end = js.find("};", start)
    rules = re.findall(r'"([^"]+)":(?:\'([^\']*)\'|"([^"]*)")', js[start:end])
    out = []
    for sel, v1, v2 in rules:
        sel = re.sub(r"^,", " ,", sel).replace("X", ".js-plotly-plot .plotly").replace("Y", ".plotly-notifier")
        out.append(f"{sel}{{{v1 or v2}}}")
    return "\n".join(out) + "\n"


@lru_cache(maxsize=1)
def plotly_style_ids() -> tuple[str, ...]:
    """Ids of the ``<style>`` elements plotly.js's bundled libraries (maplibre) insert on load unless
    an element with that id exists: the pages carry such an element, so nothing inline is tried."""
    js = plotly_js().read_text(encoding="utf-8", errors="replace")
    return tuple(dict.fromkeys(re.findall(
        r'getElementById\("([0-9A-Za-z_-]{8,})"\)\)\{var \w+=document\.createElement\("style"\)', js)))


def host_outflow(data: dict) -> str:
    """Bytes out per hour, with the host's baseline median and threshold when it has history."""
    hours = [r["hour"] for r in data["hours"]]
    # each bar spans its hour (plotly's width is in milliseconds on a date axis)
    fig = go.Figure(go.Bar(x=[h + timedelta(minutes=30) for h in hours], y=[r["bytes_out"] for r in data["hours"]],
                           width=[3_600_000 * 0.9] * len(hours), name="bytes out per hour"))
    b = data["baseline"]
    if b and hours:
        span = [hours[0] - timedelta(minutes=30), hours[-1] + timedelta(minutes=30)]
        fig.add_trace(go.Scatter(x=span, y=[b["median"]] * 2, mode="lines", name="baseline median"))
        fig.add_trace(go.Scatter(x=span, y=[b["threshold"]] * 2, mode="lines", name="baseline threshold",
                                 line=dict(dash="dash")))
    fig.update_layout(**_LAYOUT, yaxis_title="bytes out", xaxis_title="hour (UTC)")
    if hours:
        fig.update_xaxes(range=[hours[0] - timedelta(hours=1), hours[-1] + timedelta(hours=2)])
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
