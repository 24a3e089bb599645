"""Results computed once per workspace state and shared by every thread of a process.

The console's expensive answers (the sensors' coverage, the payload shares, an accounting) depend
only on what the workspace holds, not on who asks: a scan of ten million records takes seconds,
so each is computed once per workspace state and kept. ``StateCache.get`` is *single-flight*: the
first caller for a key computes, a caller that asks for the same key meanwhile (another request,
or the console's warm-up, ``abfluss.web.warm``) waits for that computation and gets its result,
so two concurrent first requests never compute twice. Keys start with ``(workspace, state)``:
storing a result for a new state drops the results of the same workspace's former states (an
ingest, ``watch`` commit or analysis makes them stale). Filtering per caller is not done here:
a cached result is a tenant's or all tenants' by its key, and the query layer picks the key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

#: Every cache made, so ``clear_all`` (tests, the bench's cold measurement) can empty them.
_ALL: list["StateCache"] = []


class _Flight:
    """One computation in progress: the callers waiting for it get its value (or compute
    themselves if it failed)."""

    def __init__(self):
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class StateCache:
    """Results keyed ``(workspace, state, *rest)``, computed once per key by whoever asks first.

    ``budget`` bounds what is kept: the sum of ``weight(value)`` over the kept results (the
    least recently used go first); a single result heavier than ``max_weight`` is handed to its
    callers but not kept.
    """

    def __init__(self, budget: float = float("inf"), weight: Callable[[Any], float] = lambda v: 1,
                 max_weight: float = float("inf")):
        self.budget, self.weight, self.max_weight = budget, weight, max_weight
        self._lock = threading.Lock()
        self._done: OrderedDict[Hashable, tuple[Any, float]] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self.computed = 0  # computations run (tests: two concurrent first calls make one)
        _ALL.append(self)

    def get(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """The kept result for ``key``, else the running computation's, else ``compute()``'s."""
        while True:
            with self._lock:
                if key in self._done:
                    self._done.move_to_end(key)
                    return self._done[key][0]
                flight = self._flights.get(key)
                leader = flight is None
                if leader:
                    flight = self._flights[key] = _Flight()
            if not leader:
                flight.done.wait()
                if flight.ok:
                    return flight.value
                continue  # the computation failed (its caller got the error): try again
            try:
                value = compute()
            except BaseException:
                with self._lock:
                    del self._flights[key]
                flight.done.set()
                raise
            with self._lock:
                self.computed += 1
                self._keep(key, value)
                flight.value, flight.ok = value, True
                del self._flights[key]
            flight.done.set()
            return value

    def _keep(self, key: tuple, value: Any) -> None:
        for old in [k for k in self._done if k[0] == key[0] and k[1] != key[1]]:
            del self._done[old]  # a former state of this workspace
        w = self.weight(value)
        if w > self.max_weight:
            return
        self._done[key] = (value, w)
        total = sum(x[1] for x in self._done.values())
        while total > self.budget and len(self._done) > 1:
            total -= self._done.popitem(last=False)[1][1]

    def __contains__(self, key: tuple) -> bool:
        with self._lock:
            return key in self._done

    def clear(self) -> None:
        with self._lock:
            self._done.clear()


def clear_all() -> None:
    """Forget every kept result in this process (tests; a cold measurement)."""
    for c in _ALL:
        c.clear()
