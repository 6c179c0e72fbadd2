"""Switching the served model inside a worker (service/model_switch.py): a request in flight finishes on the
model it took, the old batcher closes once idle; and what the learning panel counts (service/learning.py).
The registry that decides which model to switch to is tested in test_registry*.py."""

from __future__ import annotations

import asyncio
import random
import threading
from datetime import UTC, datetime, timedelta

import numpy as np

from contract.preprocess import to_model_input
from contract.runtime import load_model
from contract.store import NewItem, Store
from service.batching import Batcher
from service.learning import learning_commands, learning_summary
from service.model_switch import ModelSwitch


def _batcher(classifier) -> Batcher:
    return Batcher(classifier.probabilities, max_batch_size=8, max_latency_s=0)


def test_a_request_in_flight_finishes_on_the_model_it_started_with(tiny_model_path, fmnist):
    first, second = load_model(tiny_model_path, device="cpu"), load_model(tiny_model_path, device="cpu")
    images = to_model_input(fmnist.test_images[:4])
    switched: list = []

    async def scenario():
        switch = ModelSwitch(first, make_batcher=_batcher, on_switch=lambda new, old: switched.append((new, old)))
        old = switch.current
        batch_started, release = threading.Event(), threading.Event()
        infer = old.batcher.infer
        old.batcher.infer = lambda x: (batch_started.set(), release.wait(30), infer(x))[2]  # the old model mid-batch
        in_flight = asyncio.create_task(old.submit(images))  # a request that took the old model
        await asyncio.to_thread(batch_started.wait, 30)
        replaced = switch.switch_to(second)
        assert replaced is old and switch.current.classifier is second and old.in_flight == 1
        await asyncio.sleep(0)
        assert not old.batcher._executor._shutdown  # still open: a request holds it
        release.set()
        answer = await in_flight
        await asyncio.wait_for(asyncio.gather(*switch._retiring), 10)  # the task that closes it once idle
        assert old.batcher._executor._shutdown
        fresh = await switch.current.submit(images)
        switch.close()
        return answer, fresh

    answer, fresh = asyncio.run(scenario())
    np.testing.assert_allclose(answer, first.probabilities(images), rtol=1e-5)
    np.testing.assert_allclose(fresh, second.probabilities(images), rtol=1e-5)
    assert [(n.classifier, o.classifier) for n, o in switched] == [(second, first)]


def test_learning_counts_waiting_corrections_and_samples_confident_unchecked_items(fmnist, tmp_path):
    def new(i: int, unsure: bool) -> NewItem:
        return NewItem(filename=f"{i}.png", thumbnail=b"", thumbnail_type="image/png",
                       model_input=fmnist.test_images[i],
                       predicted_label="Bag", confidence=0.4 if unsure else 0.97, top_k=[], unsure=unsure,
                       model_sha256="ab" * 32)  # fmt: skip

    start = datetime(2026, 1, 1, tzinfo=UTC)
    with Store.open(str(tmp_path / "w.db")) as store:
        items = store.add([new(i, unsure=i >= 11) for i in range(13)])  # 11 confident, 2 unsure
        for item in items[:5]:
            store.correct(item.id, "Coat", now=start)
        summary, audit = learning_summary(store, {}, random.Random(0))
        assert (summary["corrected"], summary["waiting"], summary["fine_tuned"]) == (5, 5, False)
        assert len(audit) == 6
        assert {i.id for i in audit} <= {i.id for i in items[5:11]}  # unchecked and confident only

        # A fine-tuned model exported after those corrections has learned them; a later one waits.
        tuned = {
            "wardrobe_sha256": "cd" * 32,
            "exported_at": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        store.correct(items[6].id, "Bag", now=start + timedelta(hours=2))
        summary, audit = learning_summary(store, tuned, random.Random(0))
        assert (summary["corrected"], summary["waiting"], summary["fine_tuned"]) == (6, 1, True)
        assert items[6].id not in {i.id for i in audit}
    commands = learning_commands("sqlite:////data/w.db")
    assert commands[0] == "wardrobe train --config configs/finetune.toml --set data.wardrobe='sqlite:////data/w.db'"
    assert commands[1].endswith("--publish") and "wardrobe models promote" in commands[2]
