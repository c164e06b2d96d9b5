"""Ordering one stream after another without the host waiting: what every vendor's Backend.stream_wait
shares. One event a device, recorded on the producer's stream and waited on by the consumer's, both under
one lock: a wait takes the event's latest record, so another thread's record between the two would be
waited on instead. The vendor calls come from the backend (_event_new, _event_record, _event_wait)."""
from __future__ import annotations

import threading


class StreamWaits:
    def __init__(self, backend):
        self._backend = backend
        self._lock = threading.Lock()
        self._events: dict[int, object] = {}  # device -> its event

    def __call__(self, stream: int, on: int, device: int) -> None:
        """`stream` waits for the work enqueued on `on` so far (the device's context already current)."""
        b = self._backend
        with self._lock:
            ev = self._events.get(device)
            if ev is None:
                ev = self._events[device] = b._event_new()
            b._event_record(ev, on)
            b._event_wait(stream, ev)
