"""service.batching: concurrent submissions share model calls, keep their rows, respect bounds."""

from __future__ import annotations

import asyncio

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


def test_a_busy_model_batches_what_queued_meanwhile_without_a_timer():
    sizes = []

    def slow(batch):
        import time

        time.sleep(0.05)
        return _identity(batch)

    batcher = Batcher(slow, max_batch_size=64, max_latency_s=0,
                      on_batch=sizes.append)  # fmt: skip

    async def main():
        first = asyncio.ensure_future(batcher.submit(_images(0, 1)))
        await asyncio.sleep(0.01)  # the first call is running now
        rest = [batcher.submit(_images(i, 1)) for i in range(1, 6)]
        return await asyncio.gather(first, *rest)

    answers = _run(main())
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
