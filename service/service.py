"""The BentoML service: POST /classify answers which clothes the uploaded images show.

Start it with `wardrobe serve` (or `bentoml serve service.service:Wardrobe`).
Configuration comes from WARDROBE_* variables (service/settings.py), read once
at import so the decorator below can size workers and request the GPU. What
/classify takes and answers is declared in service/schema.py, so BentoML's
clients, `/schema.json` and the OpenAPI document describe it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import bentoml
import numpy as np
import orjson
from starlette.responses import Response

from contract.runtime import SHIPPED_MODEL, Classifier, cuda_available, load_model
from service.access import RequestGuard, WardrobeAccess, explain_at_start, listening_host
from service.admission import BodyDeadline, ConnectionCap
from service.batching import Batcher
from service.decode_budget import DecodeBudget
from service.headers import SecurityHeaders
from service.lingering import install_lingering_close
from service.models_swap import ModelOnReadyz, ModelSwitch, admin_app, wardrobe_items
from service.schema import ClassifyInput, Prediction
from service.settings import Settings
from service.uploads import Upload, UploadGate, UploadPath
from service.wardrobe import UPLOADS, wardrobe_app

log = logging.getLogger("bentoml.wardrobe")  # under "bentoml": its log handlers apply

_REQUESTED = Settings.from_env()
GPU = _REQUESTED.device != "cpu" and cuda_available()
SETTINGS = _REQUESTED.resolved(gpu=GPU, cpu_count=os.cpu_count() or 1)
# "cuda" without a usable GPU must fail loudly in load_model, not quietly fall back to CPU.
DEVICE = "cuda" if GPU or _REQUESTED.device == "cuda" else "cpu"


@bentoml.service(
    name="wardrobe",
    workers=SETTINGS.workers,
    threads=1,  # the endpoint is async; inference has its own thread in the Batcher
    resources={"gpu": 1} if GPU else {"cpu": str(SETTINGS.workers)},
    traffic={"timeout": SETTINGS.timeout_s},
    # Off by default: a log line per request is a real share of the work on a model this small.
    logging={"access": {"enabled": SETTINGS.access_log}},
    # BentoML's OpenTelemetry middleware builds a span per request even when nothing samples it.
    tracing={} if SETTINGS.tracing else {"excluded_urls": ["/classify", "/metrics", "/readyz"]},
)
class Wardrobe:
    def __init__(self) -> None:
        import prometheus_client  # only now: the worker has set up multiprocess metrics

        s = SETTINGS
        self.settings = s
        first = self._load(s.model)
        self.batch_sizes = prometheus_client.Histogram(
            "wardrobe_batch_size",
            "Images per onnxruntime call, as formed by the adaptive batcher",
            buckets=[2**i for i in range(s.max_batch_size.bit_length() + 1)],
        )
        predictions = prometheus_client.Counter(
            "wardrobe_predictions", "Images classified, by predicted label", ["label"]
        )
        # One child per class up front: every label shows (at 0) and no lookup per image.
        self.predictions = {label: predictions.labels(label=label) for label in first.classes}
        self.model_info = prometheus_client.Gauge(
            "wardrobe_model", "1 for the model this worker serves (by SHA-256), 0 for models it served before",
            ["sha256"], multiprocess_mode="liveall",
        )  # fmt: skip
        self.model_info.labels(sha256=first.info.sha256).set(1)
        # The served model, replaceable while serving (service/models_swap.py).
        self.models = ModelSwitch(
            first.info.path, load=self._load, make_batcher=self._batcher, canary_items=wardrobe_items(s.db),
            installable=not first.info.path.resolve().is_relative_to(SHIPPED_MODEL.parent.resolve()),
            on_swap=self._swapped, first=first,
        )  # fmt: skip
        self.ready = True
        log.info(
            "wardrobe ready: %s on %s, max batch %d, max latency %g ms, at most %d requests in progress",
            self.classifier.info.path, ",".join(self.classifier.info.providers),
            s.max_batch_size, s.max_latency_ms, s.queue_bound,
        )  # fmt: skip

    def _load(self, path: Path | None) -> Classifier:
        """Open and check a model, then run every batch size the batcher may form, so no request
        pays a first-call cost."""
        classifier = load_model(path, device=DEVICE, threads=self.settings.threads)
        for n in range(1, self.settings.max_batch_size + 1):
            classifier.probabilities(np.zeros((n, 1, 28, 28), dtype=np.float32))
        return classifier

    def _batcher(self, classifier: Classifier) -> Batcher:
        s = self.settings
        return Batcher(classifier.probabilities, max_batch_size=s.max_batch_size,
                       max_latency_s=s.max_latency_ms / 1000, on_batch=self.batch_sizes.observe)  # fmt: skip

    def _swapped(self, new, old) -> None:
        self.model_info.labels(sha256=old.sha256).set(0)
        self.model_info.labels(sha256=new.sha256).set(1)

    # The model of the moment, for code that takes it once per request (service/wardrobe.py).
    @property
    def classifier(self) -> Classifier:
        return self.models.current.classifier

    @property
    def batcher(self) -> Batcher:
        return self.models.current.batcher

    @property
    def classes(self) -> tuple[str, ...]:
        return self.models.current.classes

    @bentoml.on_startup
    async def watch_model_file(self) -> None:
        self.watcher = asyncio.get_running_loop().create_task(self.models.watch(), name="wardrobe-model-watch")

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)

    @bentoml.api(route="/classify", input_spec=ClassifyInput)
    async def classify(self, images: Upload) -> list[Prediction]:
        """Classify the images uploaded in multipart field `images`; one answer per image, in upload order."""
        # `images` arrives read, limited and decoded by the upload gate (service/uploads.py).
        served = self.models.current  # this request finishes on this model, even if a swap comes
        probabilities = await served.submit(images.images)
        answers = served.classifier.answers(probabilities, self.settings.top_k)
        for answer in answers:
            self.predictions[answer["label"]].inc()
        # Encoded here, not validated into `Prediction`s by BentoML: the same JSON at a fraction of the cost.
        return Response(orjson.dumps(answers), media_type="application/json")

    @bentoml.on_shutdown
    def close(self) -> None:
        self.models.close()


# Answers sent while an upload is still arriving (413, 400, 503, 408) reach the client: a closing
# connection first reads and drops what is still coming (nginx's lingering_close; service/lingering.py).
install_lingering_close()
LISTENING = listening_host()
explain_at_start(SETTINGS.token, LISTENING)
# Outermost first: security headers on every answer, the connection cap, the body deadline, the
# Host/Origin guard and the wardrobe's token (their refusals end the connection, which lingers), then
# the one upload gate of this worker, for /classify and the wardrobe's uploads alike.
Wardrobe.add_asgi_middleware(SecurityHeaders)
Wardrobe.add_asgi_middleware(ConnectionCap, limit=SETTINGS.max_connections)
Wardrobe.add_asgi_middleware(BodyDeadline, idle_s=SETTINGS.body_idle_s, min_rate=SETTINGS.body_min_rate)
Wardrobe.add_asgi_middleware(
    RequestGuard, token=SETTINGS.token, host=LISTENING, allowed_hosts=SETTINGS.allowed_host_names
)
Wardrobe.add_asgi_middleware(WardrobeAccess, token=SETTINGS.token, host=LISTENING)
Wardrobe.add_asgi_middleware(
    UploadGate,
    paths={"/classify": UploadPath(), **UPLOADS},
    max_files=SETTINGS.max_files,
    max_file_bytes=SETTINGS.max_file_bytes,
    max_request_bytes=SETTINGS.max_request_bytes,
    max_pixels=SETTINGS.max_pixels,
    max_in_flight=SETTINGS.queue_bound,
    decodes=DecodeBudget.from_settings(SETTINGS),
)


def _models() -> ModelSwitch | None:
    """This worker's ModelSwitch (None before the service is created)."""
    try:
        return bentoml.get_current_service().models
    except Exception:  # BentoMLException before the instance exists
        return None


Wardrobe.add_asgi_middleware(ModelOnReadyz, switch=_models)
# /admin/reload, /admin/rollback and /admin/model (service/models_swap.py), mounted before the app at /.
Wardrobe.mount_asgi_app(admin_app(SETTINGS.token, _models), path="/admin", name="admin")
# The page at /, the explorer at /docs and the /wardrobe/* endpoints (service/wardrobe.py).
Wardrobe.mount_asgi_app(wardrobe_app(SETTINGS), path="/", name="wardrobe")
