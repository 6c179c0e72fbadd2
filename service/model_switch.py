"""The served model of one worker, and replacing it without dropping a request.

BentoML 1.4 has no in-process model swap (its maintainers point to Kubernetes
rollouts), so each worker keeps its model as one `Served` value — the classifier
and a batcher of its own — and a request takes the value current when it arrives
and finishes on it: a switch only changes which value the *next* request takes,
and the old batcher is closed once its last request is answered. Which model to
switch to is the registry's decision (service/registry_follower.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from contract.runtime import Classifier
from service.batching import Batcher

log = logging.getLogger("bentoml.wardrobe")


@dataclass(eq=False)
class Served:
    """One model as a worker serves it: requests that took it finish on it."""

    classifier: Classifier
    batcher: Batcher
    in_flight: int = 0

    @property
    def sha256(self) -> str:
        return self.classifier.info.sha256

    @property
    def classes(self) -> tuple[str, ...]:
        return self.classifier.classes

    async def submit(self, images: np.ndarray) -> np.ndarray:
        self.in_flight += 1
        try:
            return await self.batcher.submit(images)
        finally:
            self.in_flight -= 1


class ModelSwitch:
    """This worker's served model (`current`) and the one way to replace it (`switch_to`)."""

    def __init__(
        self,
        first: Classifier,
        make_batcher: Callable[[Classifier], Batcher],
        on_switch: Callable[[Served, Served], None] = lambda new, old: None,
    ):
        self.make_batcher = make_batcher
        self.on_switch = on_switch
        self.current = Served(first, make_batcher(first))
        self._retiring: set[asyncio.Task] = set()

    @property
    def sha256(self) -> str:
        return self.current.sha256

    def switch_to(self, classifier: Classifier) -> Served:
        """Serve `classifier` to every request from now on; return the model it replaces. Requests that took
        the old one finish on it, and its batcher closes once they are answered. Call on the event loop."""
        old = self.current
        self.current = Served(classifier, self.make_batcher(classifier))
        task = asyncio.get_running_loop().create_task(self._close_when_idle(old), name="wardrobe-retire-model")
        self._retiring.add(task)  # a reference, so the task is not collected before it runs
        task.add_done_callback(self._retiring.discard)
        self.on_switch(self.current, old)
        log.info("now serving model %s (was %s)", self.current.sha256, old.sha256)
        return old

    @staticmethod
    async def _close_when_idle(served: Served, poll_s: float = 0.05) -> None:
        # A request that took `served` just before the switch may not have reached its batcher yet:
        # yield once, then wait until no request holds it and nothing is queued.
        await asyncio.sleep(0)
        while served.in_flight or served.batcher.queued:
            await asyncio.sleep(poll_s)
        served.batcher.close()

    def close(self) -> None:
        for task in self._retiring:
            task.cancel()
        self.current.batcher.close()
