"""Progress of long runs: a bar with rate and time remaining on stderr, and paged log scans."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType, TracebackType
from typing import Any, Protocol, Self, TypeVar

from tqdm import tqdm

from chargeledger.core.events import Recorded
from chargeledger.core.store import Store

__all__ = ["INTERRUPTED", "Interrupt", "Progress", "pages", "scan"]

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""

PAGE = 5000
"""Events read per store query."""


class Progress:
    """A progress bar on stderr, shown when ``show`` is true or, when it is ``None``, when
    stderr is a terminal. ``total`` and the counts are in ``unit`` (events, bytes, ...)."""

    def __init__(self, total: int, label: str, unit: str = "ev", show: bool | None = None) -> None:
        visible = sys.stderr.isatty() if show is None else show
        self._bar = tqdm(
            total=total,
            desc=label,
            unit=unit,
            unit_scale=True,
            file=sys.stderr,
            disable=not visible,
            dynamic_ncols=True,
            leave=False,
        )
        self._done = 0

    def advance_to(self, done: int) -> None:
        """Move the bar to ``done`` (absolute: a position, a byte offset)."""
        if done > self._done:
            self._bar.update(done - self._done)
            self._done = done

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Interrupt:
    """Ctrl-C as a request to stop: while active, the first SIGINT only sets ``requested``,
    so a long loop stops at its next check, keeps what it did and reports it; a second one
    interrupts at once (``KeyboardInterrupt``). Only the main thread can catch signals:
    elsewhere it never activates and Ctrl-C works as usual."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> Self:
        with contextlib.suppress(ValueError):  # not the main thread
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


class _Positioned(Protocol):
    @property
    def position(self) -> int: ...


P = TypeVar("P", bound=_Positioned)


def pages(
    read: Callable[[int, int, int], Sequence[P]],
    last: int,
    label: str,
    show: bool | None = None,
    interrupt: Interrupt | None = None,
    read_ahead: bool = False,
) -> Iterator[Sequence[P]]:
    """Pages of ``read(after, limit, stop)`` up to position ``last``, with a progress bar over
    positions. Ends early, after a whole page, once ``interrupt`` is requested. With
    ``read_ahead`` the next page is read in a worker thread while the caller processes the
    current one."""
    with (
        Progress(last, label, "ev", show) as progress,
        ThreadPoolExecutor(1) if read_ahead else contextlib.nullcontext() as pool,
    ):
        after = 0
        ahead = None if pool is None else pool.submit(read, after, PAGE, last)
        while after < last and not (interrupt is not None and interrupt.requested):
            page = read(after, PAGE, last) if ahead is None else ahead.result()
            if not page:
                return
            after = page[-1].position
            if pool is not None and after < last:
                ahead = pool.submit(read, after, PAGE, last)
            yield page
            progress.advance_to(after)


def scan(
    store: Store,
    label: str,
    show: bool | None = None,
    stop: int | None = None,
    interrupt: Interrupt | None = None,
) -> Iterator[Recorded]:
    """Every event of ``store`` up to position ``stop`` (default: the newest when the scan
    starts, so events committed meanwhile are left for the next run): see :func:`pages`,
    reading ahead from a database server."""
    last = store.max_position() if stop is None else stop
    for page in pages(store.read, last, label, show, interrupt, store.remote):
        yield from page
