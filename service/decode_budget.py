"""What large image decodes may cost a worker: a few threads, a budget of decoded pixels, a short queue.

A file's size says little about its decode: a 12 KiB one-bit PNG can claim
6,300 × 6,300 pixels and take half a second of CPU and 40 MB to decode. Its
header, read before any pixel, says it (contract/preprocess.header_pixels). So
the upload reader (service/uploads.py) decodes a request on the event loop only
when its pixels are few (INLINE_DECODE_PIXELS, a millisecond or two); larger
ones run here, as imgproxy runs its decodes: at most `threads` at once
(IMGPROXY_CONCURRENCY), and together at most `pixels` decoded pixels in memory,
a bound on the worker's memory. A request that does not fit waits in a FIFO
queue of at most `queue` requests for at most `wait_s`; beyond either it gets
503 with Retry-After. Small requests never enter this queue, so they never wait
behind a large decode; and the decode threads run at a lower CPU priority
(nice DECODE_NICENESS), so on a busy core the event loop serving small requests
comes first (benchmarks/decode_bombs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio

from service.admission import Busy

T = TypeVar("T")

INLINE_DECODE_PIXELS = 512 * 512
"""A request with at most this many pixels in all (and at most INLINE_DECODE_BYTES) decodes on the
event loop: ~1 ms for a PNG, less than a thread hand-off is worth."""
INLINE_DECODE_BYTES = 64 * 1024
"""…and at most this many bytes: some formats cost by their bytes as well as their pixels."""
DECODE_NICENESS = 10
"""Added to the decode threads' nice value: at 10 the scheduler gives them about a tenth of the
share of the event loop's thread when both want the same core."""


def _lower_priority() -> None:
    """Run in each decode thread as it starts. On Linux a thread id names one thread, and raising
    one's own nice value needs no privilege; elsewhere the threads keep the process's priority."""
    with contextlib.suppress(AttributeError, OSError):
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + DECODE_NICENESS)


class DecodeBusy(Busy):
    """The decode queue is full, or a request waited in it too long: 503 with Retry-After, as every overload."""


class DecodeBudget:
    """At most `threads` decodes at once and `pixels` decoded pixels in all, with a bounded FIFO queue."""

    def __init__(self, *, pixels: int, threads: int, queue: int, wait_s: float):
        self.pixels = pixels
        self.threads = threads
        self.queue = queue
        self.wait_s = wait_s
        self.in_use = 0
        self.waiting: deque[list] = deque()  # [pixels, event], first come first served
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="decode", initializer=_lower_priority)

    @classmethod
    def from_settings(cls, settings) -> DecodeBudget:
        """The budget WARDROBE_DECODE_* describe (service/settings.py); a wait up to half the request timeout."""
        return cls(pixels=settings.decode_pixels, threads=settings.decode_threads, queue=settings.decode_queue,
                   wait_s=settings.timeout_s / 2)  # fmt: skip

    def _admit_waiting(self) -> None:
        while self.waiting and self.in_use + self.waiting[0][0] <= self.pixels:
            pixels, admitted = self.waiting.popleft()
            self.in_use += pixels
            admitted.set()

    def _leave(self, entry: list) -> None:
        if entry[1].is_set():  # admitted just as it gave up
            self.in_use -= entry[0]
        else:
            self.waiting.remove(entry)
        self._admit_waiting()  # those behind may fit now

    @asynccontextmanager
    async def reserve(self, pixels: int) -> AsyncIterator[None]:
        """Hold `pixels` of the budget (one image larger than the whole budget runs alone)."""
        pixels = min(pixels, self.pixels)
        if not self.waiting and self.in_use + pixels <= self.pixels:
            self.in_use += pixels
        elif len(self.waiting) >= self.queue:
            raise DecodeBusy(f"{len(self.waiting)} large uploads already waiting to be decoded")
        else:
            entry = [pixels, anyio.Event()]
            self.waiting.append(entry)
            try:
                with anyio.move_on_after(self.wait_s):
                    await entry[1].wait()
            except BaseException:  # cancelled (the client left, the body deadline): give back what we hold
                self._leave(entry)
                raise
            if not entry[1].is_set():
                self._leave(entry)
                raise DecodeBusy(f"large uploads waited {self.wait_s:g} s to be decoded")
        try:
            yield
        finally:
            self.in_use -= pixels
            self._admit_waiting()

    async def run(self, pixels: int, function: Callable[..., T], *args) -> T:
        """`function(*args)` in one of the decode threads, under `pixels` of the budget."""
        async with self.reserve(pixels):
            # Shielded: a cancelled request still waits for its decode, so the pixels stay reserved
            # until the thread has really let go of them.
            with anyio.CancelScope(shield=True):
                return await asyncio.wrap_future(self._pool.submit(function, *args))
