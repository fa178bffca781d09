"""A process-wide limit on concurrent training jobs, fair to whoever asked first.

A classroom server gets thirty "train" clicks at once; running them all together would make
every one of them slow and push memory up. A job takes as many trainers as it trains nets at
once (one worker process per core, see ``bnviz.app.workers``), in arrival order, and a waiting job
is told how many are ahead of it, so its page never looks frozen.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class TrainerPool:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1; got {slots}")
        self.slots = slots
        self._cond = threading.Condition()
        self._active = 0
        self._waiting: deque[object] = deque()

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextmanager
    def slot(
        self, on_wait: Callable[[int], None] | None = None, poll: float = 0.25, need: int = 1
    ) -> Iterator[None]:
        """Hold ``need`` trainers (at most all of them) for the duration of the block. While
        waiting, ``on_wait(ahead)`` is called whenever the number of jobs ahead in line changes
        (and once at the start)."""
        need = max(1, min(need, self.slots))
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
        last_ahead = None
        try:
            while True:
                with self._cond:
                    if self._waiting[0] is ticket and self._active + need <= self.slots:
                        self._waiting.popleft()
                        self._active += need
                        break
                    ahead = self._waiting.index(ticket)
                if on_wait is not None and ahead != last_ahead:
                    on_wait(ahead)
                    last_ahead = ahead
                with self._cond:
                    self._cond.wait(poll)
        except BaseException:
            with self._cond:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                self._cond.notify_all()
            raise
        try:
            yield
        finally:
            with self._cond:
                self._active -= need
                self._cond.notify_all()


def default_slots() -> int:
    """BNVIZ_TRAINERS if set, else one trainer per core."""
    raw = os.environ.get("BNVIZ_TRAINERS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else max(1, os.cpu_count() or 1)


TRAINERS = TrainerPool(default_slots())
