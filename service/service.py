"""The BentoML service: POST /classify answers which clothes the uploaded images show.

Start it with `wardrobe serve` (or `bentoml serve service.service:Wardrobe`).
Configuration comes from WARDROBE_* variables (service/settings.py), read once
at import so the decorator below can size workers and request the GPU.

One POST /classify in three files: `classify` below takes the request, reads
it with service/uploads.read_upload (limits, decoding, a 4xx naming the file),
and awaits the model through service/batching.py; what it takes and answers is
declared in service/schema.py, so BentoML's clients, `/schema.json` and the
OpenAPI document describe it. Every 503 is service/admission.py's `Busy`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from pathlib import Path

import bentoml
import numpy as np
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from contract.devices import cuda_available
from contract.runtime import Classifier, ModelError, load_model, load_model_bytes
from contract.store.registry import Registry
from service.access import RequestGuard, WardrobeAccess, explain_at_start, listening_host
from service.admin import admin_app
from service.admission import BodyDeadline, Busy, ConnectionCap, InFlight
from service.batching import Batcher
from service.headers import SecurityHeaders
from service.json_errors import JsonErrors
from service.lingering import install_lingering_close
from service.model_choice import SHIPPED_MODEL, choose_model
from service.model_standing import shipped_model
from service.model_standing import standing as model_standing
from service.model_switch import ModelSwitch, Served
from service.openapi import OpenApiDocument
from service.readyz import ModelOnReadyz
from service.registry_follower import RegistryFollower
from service.schema import ClassifyRequest, Predictions
from service.settings import Settings
from service.uploads import UploadError, UploadLimits, read_upload
from service.wardrobe import wardrobe_app

log = logging.getLogger("bentoml.wardrobe")  # under "bentoml": its log handlers apply


def _figure(accuracy: float | None) -> str:
    return "not recorded" if accuracy is None else f"{accuracy:.4f}"


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
        self.registry = Registry.open(s.db)  # the wardrobe's database holds the models too
        first = self._first_model(self._load(s.model))
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
        # The served model: one handle, replaced when the registry's champion changes (service/model_switch.py).
        self.models = ModelSwitch(first, make_batcher=self._batcher, on_switch=self._switched)
        self.follower = RegistryFollower(self.registry, self.models, load=self._load_bytes)
        # One of each per worker, for /classify and the wardrobe's uploads alike: WARDROBE_QUEUE_BOUND
        # bounds the checked uploads on both together, one decode budget what their large decodes cost.
        self.upload_limits = UploadLimits.from_settings(s)
        self.in_flight = InFlight(s.queue_bound)
        WARDROBE_APP.state.upload_limits = self.upload_limits
        WARDROBE_APP.state.in_flight = self.in_flight
        for app in (ADMIN_APP, WARDROBE_APP):  # the mounted apps reach them through app.state
            app.state.models = self.models
            app.state.registry = self.registry
            app.state.follower = self.follower
        # What the served model records against the shipped one: the ready line, /readyz, the page.
        self.shipped = WARDROBE_APP.state.shipped = shipped_model(DEVICE)
        self.ready = True
        standing = model_standing(first, self.shipped)
        log.info(
            "wardrobe ready: model %s on %s, max batch %d, max latency %g ms, at most %d requests in progress; "
            "Fashion-MNIST test accuracy %s (the shipped %s: %s)",
            first.info.sha256, ",".join(first.info.providers), s.max_batch_size, s.max_latency_ms, s.queue_bound,
            _figure(standing["model_test_accuracy"]), self.shipped.path.name, _figure(self.shipped.test_accuracy),
        )  # fmt: skip
        if standing["warning"]:
            log.warning("wardrobe: serving a much worse model than the shipped one: %s", standing["warning"])

    def _first_model(self, start: Classifier) -> Classifier:
        """The registry's champion. The model this server was started with (WARDROBE_MODEL, or the shipped
        one) is published as a candidate, and becomes the champion when there is none yet."""
        data = start.info.path.read_bytes()
        if hashlib.sha256(data).hexdigest() != start.info.sha256:
            raise ModelError(f"{start.info.path}: the file changed while the service started; start it again")
        shipped = start.info.path.resolve().is_relative_to(SHIPPED_MODEL.parent.resolve())
        by = f"wardrobe serve on {socket.gethostname()}"
        self.registry.publish(start.info.sha256, data, start.info.metadata, by, shipped=shipped)
        self.registry.crown_if_none(start.info.sha256, by)
        champion = self.registry.champion_sha256()
        if champion == start.info.sha256:
            return start
        log.info("serving the registry's champion %s; the start model %s is a candidate", champion, start.info.sha256)
        return self._load_bytes(self.registry.onnx_bytes(champion), f"registry model {champion[:12]}")

    def _load(self, path: Path | None) -> Classifier:
        if path is None:
            choice = choose_model(DEVICE)
            log.info("serving %s: %s", choice.path, choice.reason)
            path = choice.path
        return self._warm(load_model(path, device=DEVICE, threads=self.settings.threads))

    def _load_bytes(self, data: bytes, name: str) -> Classifier:
        return self._warm(load_model_bytes(data, name, device=DEVICE, threads=self.settings.threads))

    def _warm(self, classifier: Classifier) -> Classifier:
        """Run the smallest and the largest batch, so no request pays a first-call cost. Every size in between
        is not needed: after these two, a new batch size costs its first call the CPU time of its second
        (measured at 3, 17 and 40 images on the shipped CNN), and a switch to a new model stays well within
        the registry's 1 s."""
        for n in sorted({1, self.settings.max_batch_size}):
            classifier.probabilities(np.zeros((n, 1, 28, 28), dtype=np.float32))
        return classifier

    def _batcher(self, classifier: Classifier) -> Batcher:
        s = self.settings
        return Batcher(classifier.probabilities, max_batch_size=s.max_batch_size,
                       max_latency_s=s.max_latency_ms / 1000, on_batch=self.batch_sizes.observe)  # fmt: skip

    def _switched(self, new: Served, old: Served) -> None:
        self.model_info.labels(sha256=old.sha256).set(0)
        self.model_info.labels(sha256=new.sha256).set(1)
        if warning := model_standing(new.classifier, self.shipped)["warning"]:
            log.warning("wardrobe: now serving a much worse model than the shipped one: %s", warning)

    @bentoml.on_startup
    async def follow_registry(self) -> None:
        self.following = asyncio.get_running_loop().create_task(self.follower.run(), name="wardrobe-follow-registry")

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)

    @bentoml.api(route="/classify", input_spec=ClassifyRequest, output_spec=Predictions)
    async def classify(self, ctx: bentoml.Context) -> list[dict] | Response:
        """Classify the images uploaded in multipart field `images`; one answer per image, in upload order."""
        try:
            upload = await read_upload(ctx.request, self.upload_limits)  # 4xx naming the file, or Busy
            with self.in_flight.admit():  # Busy beyond the queue bound
                served = self.models.current  # this request finishes on this model, even if a switch comes
                probabilities = await served.submit(upload.images)
        except (UploadError, Busy) as refusal:
            response = refusal.response()
            ctx.response.status_code = response.status_code  # BentoML sets the answer's status from ctx
            return response
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        answers = served.classifier.answers(probabilities, self.settings.top_k)
        for answer in answers:
            answer["model_sha256"] = served.sha256
            self.predictions[answer["label"]].inc()
        return answers  # a list[Prediction] as JSON, encoded by service/schema.Predictions

    @bentoml.on_shutdown
    async def close(self) -> None:
        if following := getattr(self, "following", None):
            following.cancel()
        self.models.close()
        await self.follower.forget()
        self.registry.close()


# Answers sent while an upload is still arriving (413, 400, 503, 408) reach the client: a closing
# connection first reads and drops what is still coming (nginx's lingering_close; service/lingering.py).
install_lingering_close()
LISTENING = listening_host()
explain_at_start(SETTINGS.token, LISTENING)
# Outermost first: security headers on every answer, the connection cap, the body deadline, the
# Host/Origin guard and the wardrobe's token (their refusals end the connection, which lingers).
# Uploads are read by the endpoints themselves (service/uploads.read_upload).
Wardrobe.add_asgi_middleware(SecurityHeaders)
Wardrobe.add_asgi_middleware(JsonErrors)  # BentoML's plain-text 404/405 as our JSON errors
Wardrobe.add_asgi_middleware(ConnectionCap, limit=SETTINGS.max_connections)
Wardrobe.add_asgi_middleware(BodyDeadline, idle_s=SETTINGS.body_idle_s, min_rate=SETTINGS.body_min_rate)
Wardrobe.add_asgi_middleware(
    RequestGuard, token=SETTINGS.token, host=LISTENING, allowed_hosts=SETTINGS.allowed_host_names
)
Wardrobe.add_asgi_middleware(WardrobeAccess, token=SETTINGS.token, host=LISTENING)


# /admin/models (service/admin.py), mounted before the app at /; the page at /, the explorer at /docs and
# the /wardrobe/* endpoints (service/wardrobe.py). Each worker's Wardrobe hands them its model in app.state.
ADMIN_APP = admin_app(SETTINGS.admin_token, SETTINGS.workers)
WARDROBE_APP = wardrobe_app(SETTINGS)
Wardrobe.add_asgi_middleware(ModelOnReadyz, state=WARDROBE_APP.state)
# /docs.json: BentoML's document with every route of the two apps (service/openapi.py).
Wardrobe.add_asgi_middleware(OpenApiDocument, apps={"/admin": ADMIN_APP, "": WARDROBE_APP})
Wardrobe.mount_asgi_app(ADMIN_APP, path="/admin", name="admin")
Wardrobe.mount_asgi_app(WARDROBE_APP, path="/", name="wardrobe")
