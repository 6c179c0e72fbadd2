"""service.batching: concurrent submissions share model calls, keep their rows, respect bounds."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from service.batching import Batcher


def _images(first: int, count: int) -> np.ndarray:
    """count images whose every pixel is its own index, so answers can be traced back."""
    return np.arange(first, first + count, dtype=np.float32)[:, None, None, None] * np.ones(
        (1, 1, 28, 28), dtype=np.float32
    )


def _identity(batch: np.ndarray) -> np.ndarray:
    return batch[:, 0, 0, :1]  # one column: the image's index


def _run(coroutine):
    return asyncio.run(coroutine)


def test_requests_waiting_together_share_one_call_and_get_their_own_rows():
    sizes = []
    batcher = Batcher(_identity, max_batch_size=64, max_latency_s=0.05,
                      on_batch=sizes.append)  # fmt: skip

    async def main():
        return await asyncio.gather(*(batcher.submit(_images(10 * i, i + 1)) for i in range(4)))

    answers = _run(main())
    assert sizes == [10]
    for i, answer in enumerate(answers):
        assert answer[:, 0].tolist() == list(range(10 * i, 10 * i + i + 1))


async def until(condition, timeout_s: float = 10.0) -> None:
    """Yield to the event loop until `condition()` holds; fail after `timeout_s` (a deadline, not a sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.001)


def test_a_busy_model_batches_what_queued_meanwhile_without_a_timer():
    sizes = []
    busy, release = threading.Event(), threading.Event()

    def held_first_call(batch):
        if not busy.is_set():  # the first call: the model stays busy until the others have queued
            busy.set()
            release.wait(10)
        return _identity(batch)

    batcher = Batcher(held_first_call, max_batch_size=64, max_latency_s=0,
                      on_batch=sizes.append)  # fmt: skip

    async def main():
        first = asyncio.ensure_future(batcher.submit(_images(0, 1)))
        await asyncio.to_thread(busy.wait, 10)  # the first call is running now
        rest = [asyncio.ensure_future(batcher.submit(_images(i, 1))) for i in range(1, 6)]
        await until(lambda: batcher.queued == 5)
        release.set()
        return await asyncio.gather(first, *rest)

    try:
        answers = _run(main())
    finally:
        release.set()
        batcher.close()
    assert sizes == [1, 5]
    assert [a[0, 0] for a in answers] == [0, 1, 2, 3, 4, 5]


def test_a_request_larger_than_a_batch_is_split_and_reassembled_in_order():
    sizes = []
    batcher = Batcher(_identity, max_batch_size=8, max_latency_s=0,
                      on_batch=sizes.append)  # fmt: skip
    answer = _run(batcher.submit(_images(0, 20)))
    assert answer[:, 0].tolist() == list(range(20))
    assert max(sizes) <= 8 and sum(sizes) == 20


def test_a_model_failure_fails_that_batch_only():
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return _identity(batch)

    batcher = Batcher(flaky, max_batch_size=64, max_latency_s=0)

    async def main():
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(_images(0, 1))
        return await batcher.submit(_images(7, 1))

    assert _run(main())[0, 0] == 7


def test_a_cancelled_request_leaves_the_queue_and_never_reaches_the_model():
    release = threading.Event()
    calls: list[list[float]] = []

    def slow_identity(batch: np.ndarray) -> np.ndarray:
        calls.append(batch[:, 0, 0, 0].tolist())
        if len(calls) == 1:
            release.wait(10)  # the model is busy with the first request while others queue
        return _identity(batch)

    batcher = Batcher(slow_identity, max_batch_size=64, max_latency_s=0)

    async def main():
        first = asyncio.create_task(batcher.submit(_images(0, 1)))
        await until(lambda: bool(calls))  # the first request is in the model now
        gone = asyncio.create_task(batcher.submit(_images(100, 3)))
        kept = asyncio.create_task(batcher.submit(_images(200, 2)))
        await until(lambda: batcher.queued == 5)
        gone.cancel()  # the client went away while waiting for the busy model
        await asyncio.sleep(0)
        release.set()
        answers = await asyncio.gather(first, kept)
        with pytest.raises(asyncio.CancelledError):
            await gone
        return answers

    try:
        first, kept = _run(main())
    finally:
        batcher.close()
    assert calls == [[0.0], [200.0, 201.0]], "the cancelled request's images were run"
    assert kept[:, 0].tolist() == [200.0, 201.0]
    assert batcher.queued == 0
