"""Continuous watching: follow sensors, store flows as they arrive, detect every few seconds.

``Watcher`` (loop.py) runs any number of sources at once: file followers for Zeek log
directories and Suricata eve.json (follow.py), rotating packet capture on an interface
(capture.py) and a NetFlow/IPFIX UDP collector (netflow.py). Sensor health (health.py)
turns a silent sensor or rising capture loss into findings of their own.
"""

from .defaults import DEFAULT_EVERY, DEFAULT_SILENT_AFTER, DEFAULT_WINDOW


def __getattr__(name: str):
    # The loop (DuckDB, Arrow, the detections) loads on first use, not with the package.
    if name == "Watcher":
        from .loop import Watcher
        return Watcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["DEFAULT_EVERY", "DEFAULT_SILENT_AFTER", "DEFAULT_WINDOW", "Watcher"]
