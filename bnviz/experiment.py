"""What a lesson's experiment is to whoever runs it: the explicit protocol between a lesson
and the app.

Each ``bnviz/experiments/<lesson>.py`` exports one ``EXPERIMENT``: its name, the function that
turns a config into plain data, how many worker processes one run keeps busy, and the runs it
ships precomputed in ``assets/``. The app's runner takes this object (never a module name), so
the layering is visible in the imports: pages -> app -> experiments -> engine.

Parallel work goes through an ``Executor`` handed in by the caller. The engine and the
experiments never start processes themselves: the app passes its kept worker pool
(``bnviz.app.workers``), a test or a script passes nothing and everything runs here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Progress = Callable[[int, int], None]
Call = tuple[Callable[..., Any], tuple, dict]  # a module-level function, its args and kwargs


class Executor(Protocol):
    """Runs calls ``fn(*args, progress=..., **kwargs)`` side by side in worker processes."""

    def run_many(
        self,
        calls: Sequence[Call],
        on_progress: Callable[[int, tuple], None] | None = None,
        size: int | None = None,
    ) -> list[Any]: ...

    def is_running(self, size: int = 1) -> bool: ...


@dataclass(frozen=True)
class Experiment:
    """A lesson's experiment.

    ``run(cfg, progress=None, executor=None)`` returns plain data (dataclasses of arrays);
    ``cfg`` has ``as_dict()``, whose JSON is the cache key. ``processes`` is how many trainers
    one run keeps busy (the app's queue counts them). ``shipped`` names the configs whose runs
    ship in ``assets/`` (served without training); ``encode`` and ``decode`` store a result as
    bytes and back (None: the result is runs side by side, stored by ``bnviz.store``).
    """

    name: str
    run: Callable[..., Any]
    processes: int = 1
    shipped: Mapping[str, Any] = field(default_factory=dict)
    encode: Callable[[Any], bytes] | None = None
    decode: Callable[[bytes], Any] | None = None

    def __call__(
        self, cfg: Any, progress: Progress | None = None, executor: Executor | None = None
    ) -> Any:
        return self.run(cfg, progress, executor)

    def shipped_name(self, cfg: Any) -> str | None:
        """The asset that holds the run of ``cfg``, if it ships one."""
        return next((name for name, c in self.shipped.items() if c == cfg), None)
