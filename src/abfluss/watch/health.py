"""Sensor health: a sensor that falls silent, or whose capture loss rises, is a finding.

Findings have the detection id ``sensor_health``. A silence is keyed by the sensor and the
moment it began, so each silence is reported once (and a later one again); a loss finding is
keyed by sensor and UTC hour and is re-sent only when its severity rises.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..findings import Finding

DETECTION = "sensor_health"
#: Capture loss share (missed / seen bytes over the last minutes) from which it is a finding.
DEFAULT_LOSS_SHARE = 0.05
#: Minutes of records kept per sensor for the loss share and records-per-minute figures.
MINUTES = 10


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


@dataclass
class SensorHealth:
    """Per sensor: records per minute (wall clock) and bytes seen / missed."""

    sensor: str
    started: float = field(default_factory=time.time)
    last_records: float | None = None
    minutes: deque = field(default_factory=lambda: deque(maxlen=MINUTES))  # [minute, records, bytes, missed]
    last_loss: float = 0.0

    def add(self, records: int, seen: int, missed: int, now: float | None = None) -> None:
        now = now or time.time()
        minute = int(now // 60)
        if not self.minutes or self.minutes[-1][0] != minute:
            self.minutes.append([minute, 0, 0, 0])
        m = self.minutes[-1]
        m[1] += records
        m[2] += seen
        m[3] += missed
        if records:
            self.last_records = now

    def loss_share(self) -> float:
        seen = sum(m[2] for m in self.minutes)
        missed = sum(m[3] for m in self.minutes)
        return missed / (seen + missed) if seen + missed else 0.0

    def check(self, silent_after: float, loss_share: float = DEFAULT_LOSS_SHARE,
              now: float | None = None) -> list[Finding]:
        now = now or time.time()
        out = []
        since = self.last_records or self.started
        if now - since >= silent_after:
            quiet = now - since
            what = "no records since it started" if self.last_records is None else "no records"
            out.append(Finding(
                DETECTION, (self.sensor, "silent", _utc(since).isoformat(timespec="seconds")),
                {"silent": 40 + min(40.0, 40 * quiet / (silent_after * 12))},
                f"sensor {self.sensor} fell silent: {what} for {quiet:.0f} s (limit {silent_after:.0f} s); "
                "nothing it should have seen in that time can be claimed as not having left",
                [], channel="sensor", start=_utc(since), end=_utc(now),
                metrics={"silent_seconds": round(quiet, 1)}, thresholds={"silent_after": silent_after}))
        share = self.loss_share()
        if share >= loss_share and share > self.last_loss:
            hour = _utc(now).strftime("%Y-%m-%dT%H")
            out.append(Finding(
                DETECTION, (self.sensor, "loss", hour),
                {"loss": 40 + min(50.0, 100 * share)},
                f"sensor {self.sensor} reports capture loss of {share:.1%} of bytes over the last "
                f"{len(self.minutes)} min (limit {loss_share:.0%}): transfers may be undercounted",
                [], channel="sensor", start=_utc(self.minutes[0][0] * 60), end=_utc(now),
                metrics={"loss_share": round(share, 4)}, thresholds={"loss_share": loss_share}))
        self.last_loss = share
        return out
