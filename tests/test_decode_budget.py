"""Large decodes wait for a per-worker pixel budget in a bounded queue; small ones never wait behind them."""

from __future__ import annotations

import io
import os
import threading

import anyio
import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from wardrobe_server import SAMPLES, wardrobe_server

from contract.preprocess import header_pixels
from service.admission import Busy
from service.decode_budget import DECODE_NICENESS, INLINE_DECODE_PIXELS, DecodeBudget, DecodeBusy
from service.uploads import UploadError, UploadLimits, read_upload

SNEAKER = (SAMPLES / "sneaker.png").read_bytes()


def _png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (side, side), 200).save(out, "PNG")
    return out.getvalue()


def test_header_pixels_come_from_the_header_and_unreadable_files_cost_nothing():
    assert header_pixels(_png(700)) == 700 * 700
    assert header_pixels(SNEAKER) == 28 * 28
    assert header_pixels(b"not an image") == 0


def test_the_budget_admits_in_order_queues_a_few_and_refuses_the_rest():
    async def main() -> None:
        budget = DecodeBudget(pixels=100, threads=1, queue=1, wait_s=30)
        order: list[str] = []
        first_in = anyio.Event()
        release_first = anyio.Event()

        async def first() -> None:
            async with budget.reserve(60):
                first_in.set()
                await release_first.wait()
            order.append("first out")

        async def second() -> None:
            async with budget.reserve(60):  # does not fit beside the first: waits
                order.append("second in")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(first)
            await first_in.wait()
            tasks.start_soon(second)
            while not budget.waiting:
                await anyio.sleep(0)
            with pytest.raises(DecodeBusy, match="already waiting"):  # the queue (1) is full
                async with budget.reserve(1):
                    pass
            release_first.set()
        assert order == ["first out", "second in"]
        assert budget.in_use == 0 and not budget.waiting
        async with budget.reserve(10**9):  # one image over the whole budget runs alone
            assert budget.in_use == 100

    anyio.run(main)


def test_a_waiter_that_times_out_or_is_cancelled_leaves_the_queue_and_the_budget_whole():
    async def main() -> None:
        budget = DecodeBudget(pixels=100, threads=1, queue=4, wait_s=0.01)
        async with budget.reserve(100):
            with pytest.raises(DecodeBusy, match="waited"):
                async with budget.reserve(50):
                    pass
            with anyio.CancelScope() as scope:
                budget.wait_s = 30
                async with anyio.create_task_group() as tasks:

                    async def waiter() -> None:
                        async with budget.reserve(50):
                            pass

                    tasks.start_soon(waiter)
                    while not budget.waiting:
                        await anyio.sleep(0)
                    scope.cancel()
            assert not budget.waiting
        assert budget.in_use == 0

    anyio.run(main)


def _answer_shape(limits: UploadLimits, thumbnail=None):
    async def endpoint(request):
        try:
            upload = await read_upload(request, limits, thumbnail)
        except (UploadError, Busy) as refusal:
            return refusal.response()
        return JSONResponse({"shape": list(upload.images.shape)})

    return endpoint


def test_a_small_upload_is_answered_while_every_decode_thread_is_busy_with_a_large_one():
    entered, release = threading.Event(), threading.Event()

    def blocking_thumbnail(image: Image.Image, crop: np.ndarray) -> bytes:
        entered.set()  # a large decode is in the only decode thread and holds the whole budget
        release.wait(60)
        return b"thumb"

    budget = DecodeBudget(pixels=1_000_000, threads=1, queue=4, wait_s=60)
    limits = UploadLimits(max_files=4, max_file_bytes=10**7, max_request_bytes=10**7, max_pixels=10**7,
                          decodes=budget)  # fmt: skip
    gate = Starlette(routes=[Route("/classify", _answer_shape(limits), methods=["POST"]),
                             Route("/large", _answer_shape(limits, blocking_thumbnail), methods=["POST"])])  # fmt: skip
    large = _png(1000)
    assert header_pixels(large) > INLINE_DECODE_PIXELS

    async def main() -> None:
        transport = httpx.ASGITransport(app=gate)
        answers = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def post(name: str, path: str, data: bytes) -> None:
                answers[name] = await http.post(path, files=[("images", (f"{name}.png", data))])

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(post, "large", "/large", large)
                await anyio.to_thread.run_sync(entered.wait, 60)
                await post("small", "/classify", SNEAKER)
                assert answers["small"].status_code == 200 and "large" not in answers
                assert budget.in_use == 1_000_000
                release.set()
        assert answers["large"].status_code == 200, answers["large"].text

    anyio.run(main)


def test_over_the_decode_queue_large_uploads_get_503_with_retry_after_and_small_ones_200(tmp_path):
    bomb = _png(6000)  # 36 MP of one grey: a few tens of KiB, a tenth of a second or more to decode
    with wardrobe_server(str(tmp_path / "w.db"), tmp_path / "server.log", WARDROBE_DECODE_THREADS="1",
                         WARDROBE_DECODE_PIXELS="36000000", WARDROBE_DECODE_QUEUE="1") as url:  # fmt: skip

        async def main() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                answers: list[httpx.Response] = []

                async def post(data: bytes) -> None:
                    answers.append(await http.post("/classify", files=[("images", ("x.png", data))]))

                async with anyio.create_task_group() as tasks:
                    for _ in range(8):
                        tasks.start_soon(post, bomb)
                    tasks.start_soon(post, SNEAKER)
                return answers

        answers = anyio.run(main)
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses  # the first large one and the small
    busy = [a for a in answers if a.status_code == 503]
    assert all(
        a.headers["retry-after"] == "1"
        and "server busy: " in a.json()["error"]
        and "to be decoded" in a.json()["error"]
        for a in busy
    )


def test_decode_threads_run_at_a_lower_cpu_priority_than_the_event_loop():
    def own_niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    budget = DecodeBudget(pixels=100, threads=1, queue=1, wait_s=1)
    in_thread = anyio.run(budget.run, 10, own_niceness)
    assert in_thread == min(19, own_niceness() + DECODE_NICENESS)
