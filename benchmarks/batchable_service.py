"""The alternative measured against service/service.py: BentoML's own adaptive batching.

The documented 1.4 pattern: a front service (same upload reader, same answers)
that calls a second service whose `@bentoml.api(batchable=True)` method runs
the model, reached through `bentoml.depends`. Used only to choose the design:

    WARDROBE_MODEL=models/cnn.onnx bentoml serve benchmarks.batchable_service:Front -p 3300
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import numpy as np
from starlette.responses import JSONResponse

from contract.runtime import load_model
from service.settings import Settings
from service.uploads import UploadError, UploadLimits, read_upload

SETTINGS = Settings.from_env().resolved(gpu=False, cpu_count=os.cpu_count() or 1)


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Model:
    def __init__(self) -> None:
        self.classifier = load_model(SETTINGS.model, device="cpu", threads=1)

    @bentoml.api(batchable=True, max_batch_size=SETTINGS.max_batch_size, max_latency_ms=100)
    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.classifier.probabilities(images)


@bentoml.service(
    workers=SETTINGS.workers,
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/classify"]},
)
class Front:
    model = bentoml.depends(Model)

    def __init__(self) -> None:
        self.classifier = load_model(SETTINGS.model, device="cpu", threads=1)
        self.limits = UploadLimits.from_settings(SETTINGS)

    @bentoml.api(route="/classify")
    async def classify(self, ctx: bentoml.Context) -> list[dict[str, Any]]:
        try:
            upload = await read_upload(ctx.request, self.limits)
        except UploadError as exc:
            ctx.response.status_code = exc.status
            return exc.response()
        probabilities = await self.model.to_async.probabilities(upload.images)
        return JSONResponse(self.classifier.answers(probabilities, 3))
