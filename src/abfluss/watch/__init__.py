"""Continuous watching: follow sensors, store flows as they arrive, detect every few seconds.

``Watcher`` (loop.py) runs any number of sources at once: file followers for Zeek log
directories and Suricata eve.json (follow.py), rotating packet capture on an interface
(capture.py) and a NetFlow/IPFIX UDP collector (netflow.py). Sensor health (health.py)
turns a silent sensor or rising capture loss into findings of their own.
"""

from .loop import DEFAULT_EVERY, DEFAULT_SILENT_AFTER, DEFAULT_WINDOW, Watcher

__all__ = ["DEFAULT_EVERY", "DEFAULT_SILENT_AFTER", "DEFAULT_WINDOW", "Watcher"]
