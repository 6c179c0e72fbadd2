"""Adaptive batching inside one server process: concurrent requests share one model call.

Why not BentoML's `batchable=True`: its dispatcher sits behind a second service
(`bentoml.depends`), so every request pays a second HTTP hop and process, and it
sheds load by dropping the oldest request with 503 once its latency model says
`max_latency_ms` will be missed; on this 2-core machine that measured below a
single-service endpoint with this batcher (see benchmarks/results/).

The policy is greedy: while the model is busy, arriving images queue; as soon as
it is free, everything queued (up to `max_batch_size` images) runs as one call.
Light traffic therefore gets batch size 1 and no added wait; heavy traffic gets
large batches without a timer. `max_latency_s` optionally holds an idle model
back so a batch can fill (useful on a GPU, where a call costs the same for 1 or
256 images). Inference runs on one dedicated thread, so the event loop keeps
reading and decoding the next requests meanwhile (onnxruntime releases the GIL).
The queue needs no bound of its own: the upload gate bounds the requests in
progress, and each request's images.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class Batcher:
    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int,
        max_latency_s: float,
        on_batch: Callable[[int], None] = lambda n: None,
    ):
        self.infer = infer
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_s
        self.on_batch = on_batch
        self._pending: collections.deque[tuple[np.ndarray, asyncio.Future]] = collections.deque()
        self._queued = 0  # images in _pending
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wardrobe-infer")

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """Run `infer` on `images` as part of a shared batch; return its rows for these images."""
        if len(images) > self.max_batch_size:  # larger than one batch: split, keep order
            parts = [
                self.submit(images[i : i + self.max_batch_size]) for i in range(0, len(images), self.max_batch_size)
            ]
            return np.concatenate(await asyncio.gather(*parts))
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run(), name="wardrobe-batcher")
        future = loop.create_future()
        self._pending.append((images, future))
        self._queued += len(images)
        self._wakeup.set()
        return await future

    @property
    def queued(self) -> int:
        return self._queued

    async def _fill(self) -> None:
        """Hold an idle model up to max_latency_s after the first arrival, until a batch is full."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_latency_s
        while self._queued < self.max_batch_size and (left := deadline - loop.time()) > 0:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                break

    def _take(self) -> tuple[list[np.ndarray], list[asyncio.Future]]:
        """Whole requests from the head of the queue, up to max_batch_size images."""
        images, futures, count = [], [], 0
        while self._pending and count + len(self._pending[0][0]) <= self.max_batch_size:
            x, future = self._pending.popleft()
            self._queued -= len(x)
            if future.cancelled():  # the client went away while waiting
                continue
            images.append(x)
            futures.append(future)
            count += len(x)
        return images, futures

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                if self.max_latency_s > 0:
                    await self._fill()
                images, futures = self._take()
                if not futures:
                    continue
                batch = images[0] if len(images) == 1 else np.concatenate(images)
                self.on_batch(len(batch))
                try:
                    out = await loop.run_in_executor(self._executor, self.infer, batch)
                except Exception as exc:  # a model failure fails this batch, not the server
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for x, future in zip(images, futures, strict=True):
                    if not future.done():
                        future.set_result(out[start : start + len(x)])
                    start += len(x)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
