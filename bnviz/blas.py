"""BLAS threading for tiny matrices.

Our matrices are about 60 x 100: a BLAS thread pool costs far more in hand-offs than it saves,
and numpy and scipy each bring their own OpenBLAS, whose pools spin against each other on a
small machine (measured here: 25x slower than one thread). Training runs single-threaded and
uses more cores by running more jobs, not by splitting one product.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache


@lru_cache(maxsize=1)
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def single_threaded_blas():
    with _controller().limit(limits=1, user_api="blas"):
        yield
