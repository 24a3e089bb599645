"""``abfluss watch``: follow live sensors, store flows as they arrive, alert within a minute.

Registered on the Typer app when ``abfluss.cli`` imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..units import count
from .app import _open, app, err, human_bytes, out
from ..errors import AbflussError
from ..watch.defaults import DEFAULT_EVERY, DEFAULT_ROTATE, DEFAULT_SILENT_AFTER, DEFAULT_WINDOW


@app.command()
def watch(
    interface: Annotated[Optional[list[str]], typer.Option("--interface", "-i", help="Capture live on this interface (tcpdump + NFStream). Repeatable.")] = None,
    zeek_dir: Annotated[Optional[list[Path]], typer.Option(help="Follow the current logs of this Zeek log directory across rotation. Repeatable.")] = None,
    eve: Annotated[Optional[list[Path]], typer.Option(help="Follow this Suricata eve.json as it is appended. Repeatable.")] = None,
    netflow_port: Annotated[Optional[list[int]], typer.Option(help="Collect NetFlow v5/v9/IPFIX on this UDP port. Repeatable.")] = None,
    ndjson: Annotated[Optional[Path], typer.Option(help="Also append new findings to this file (ECS, one per line).")] = None,
    sink: Annotated[Optional[list[str]], typer.Option(help="Send new findings to ndjson:PATH, udp://HOST:PORT or tcp://HOST:PORT (syslog), or an http(s):// webhook. Repeatable.")] = None,
    every: Annotated[float, typer.Option(help=f"Seconds between detection runs (default {DEFAULT_EVERY}).")] = DEFAULT_EVERY,
    window: Annotated[float, typer.Option(help=f"Seconds of data each detection run looks at, back from the newest record (default {DEFAULT_WINDOW}).")] = DEFAULT_WINDOW,
    silent_after: Annotated[float, typer.Option(help=f"Seconds without records after which a sensor is reported silent (default {DEFAULT_SILENT_AFTER}).")] = DEFAULT_SILENT_AFTER,
    rotate: Annotated[Optional[int], typer.Option(help=f"Seconds per live capture file (default {DEFAULT_ROTATE}, "
                                                       "or --every when that is shorter).", show_default=False)] = None,
    sensor: Annotated[Optional[str], typer.Option(help="Sensor name for all sources (default: per source).")] = None,
    no_inspect: Annotated[bool, typer.Option("--no-inspect", help="Do not inspect live payload for sensitive values.")] = False,
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds (default: run until stopped).")] = None,
) -> None:
    """Watch sensors continuously: store flows as they arrive, run the detections every --every
    seconds over a sliding window and send only new or raised findings. Stop with SIGTERM or
    Ctrl-C; restarted, it resumes every source where it stopped.

    Example: abfluss watch --zeek-dir /opt/zeek/logs/current --eve /var/log/suricata/eve.json --ndjson alerts.ndjson
    """
    from ..outputs.sinks import Sink
    from ..watch.loop import Options, Watcher
    if not (interface or zeek_dir or eve or netflow_port):
        raise AbflussError("watch needs a source: --interface, --zeek-dir, --eve or --netflow-port")
    if every <= 0 or window <= 0 or silent_after <= 0 or (rotate is not None and rotate <= 0):
        raise AbflussError("--every, --window, --silent-after and --rotate must be positive")
    if rotate is None:  # a packet waits for its capture file to close: no longer than a detection run
        rotate = max(1, min(DEFAULT_ROTATE, int(every)))
    sinks = [Sink(s) for s in sink or []] + ([Sink(f"ndjson:{ndjson}")] if ndjson else [])

    def emit(findings) -> None:
        for f in findings:
            out.print(f"{f.severity:8s} {f.score:3.0f}  {f.detection:22s} {human_bytes(f.bytes_out):>9s}  "
                      f"{f.explanation}", markup=False, highlight=False)

    def delivered(_stats) -> None:  # a sink that is down must not stop the watch; say so, go on
        for spec, d in w.deliveries.items():
            if d.error:
                err.print(f"abfluss: {d.error}; {count(d.queued, 'finding')} queued for it", markup=False, highlight=False)

    opts = Options(every=every, window=window, silent_after=silent_after, rotate=rotate, inspect=not no_inspect)
    with _open(write=True) as ws:
        w = Watcher(ws, opts, sinks)
        for d in zeek_dir or []:
            w.add_zeek_dir(d, sensor)
        for e in eve or []:
            w.add_eve(e, sensor)
        for i in interface or []:
            w.add_interface(i, sensor)
        for p in netflow_port or []:
            w.add_netflow(p, sensor)
        out.print(f"watching {', '.join(s.name for s in w.sources)}; detections every {every:g} s", markup=False)
        w.run(emit, duration, on_cycle=delivered,
              on_note=lambda line: err.print(f"abfluss: {line}", markup=False, highlight=False))
        out.print(f"stopped: {w.stats['records']:,} records stored, {count(w.stats['findings_sent'], 'finding')} sent",
                  markup=False)
