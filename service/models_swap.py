"""Replacing the served model while the service runs, without dropping a request.

BentoML 1.4 has no in-process model swap (its maintainers point to Kubernetes
rollouts), so each worker keeps its model as one `Served` value — the classifier
and a batcher of its own — and a request takes the value current when it arrives
and finishes on it: a swap only changes which value the *next* request takes, and
the old batcher is closed once its last request is answered.

A candidate model reaches a worker three ways: `POST /admin/reload` with
`{"model": "<path>"}` (install that file), `POST /admin/reload` without a body
or the served file being replaced atomically (`mv new.onnx served.onnx`; every
worker polls the file), and `POST /admin/rollback` (the previous model). Each
must pass the contract check (contract/runtime.py opens, checks and warms it up)
and, except a rollback, a canary: its accuracy on the wardrobe's held-out items
(the ids in its metadata, else every item a person labelled) may not fall more
than 0.5 points below the current model's. A refused candidate changes nothing;
the log and the answer say why. An accepted one is installed at the served path
(WARDROBE_MODEL) atomically, the model it replaces is kept beside it as
`<name>.previous.onnx`, and `<name>.accepted.json` records the decision so the
other workers follow it without deciding again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from pathlib import Path

import anyio.to_thread
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from contract.files import write_bytes
from contract.preprocess import to_model_input
from contract.runtime import Classifier, ModelError
from service.batching import Batcher

log = logging.getLogger("bentoml.wardrobe")

CANARY_MAX_DROP = 0.005
"""A candidate may score at most this much (0.5 points) below the current model on the held-out items."""
WATCH_INTERVAL_S = 1.0
"""How often each worker looks at the served file's size, time and inode."""
MAX_JSON_BYTES = 16 * 1024


class SwapRefused(Exception):
    """A candidate was not taken; `status` is the HTTP answer, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(eq=False)
class Served:
    """One model as a worker serves it: requests that took it finish on it."""

    classifier: Classifier
    batcher: Batcher
    data: bytes
    in_flight: int = 0
    retired: bool = False

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


@dataclass(frozen=True)
class Canary:
    """The candidate against the current model on the wardrobe's held-out items."""

    items: int
    current: float | None
    candidate: float | None
    passed: bool
    note: str

    def as_dict(self) -> dict:
        return {"items": self.items, "current_accuracy": self.current, "candidate_accuracy": self.candidate,
                "passed": self.passed, "note": self.note}  # fmt: skip


def run_canary(
    current: Classifier, candidate: Classifier, items: tuple[np.ndarray, list[str]] | None, max_drop: float
) -> Canary:
    """Compare accuracies on (images float32 [N, 1, 28, 28], labels as class names)."""
    if items is None or len(items[1]) == 0:
        return Canary(0, None, None, True, "no labelled wardrobe items to compare on; only the contract was checked")
    images, labels = items
    scores = []
    for model in (current, candidate):
        known = [i for i, label in enumerate(labels) if label in model.classes]
        truth = np.array([model.classes.index(labels[i]) for i in known])
        scores.append(float(np.mean(model.logits(images[known]).argmax(1) == truth)) if known else 0.0)
    passed = scores[1] >= scores[0] - max_drop - 1e-12
    verdict = "passes" if passed else f"is more than {max_drop * 100:g} points below the current model"
    note = f"candidate {scores[1]:.4f} vs current {scores[0]:.4f} on {len(labels)} held-out wardrobe items: {verdict}"
    return Canary(len(labels), scores[0], scores[1], passed, note)


def wardrobe_items(db: str) -> Callable[[Classifier], tuple[np.ndarray, list[str]] | None]:
    """The canary's items for a candidate: the held-out ids its metadata lists, else every item a person
    labelled, read from the wardrobe database (None when there is no wardrobe yet)."""

    def items(candidate: Classifier) -> tuple[np.ndarray, list[str]] | None:
        from contract.store import HeldOutError, Store, StoreError, held_out_for

        try:
            with Store.open(db, create=False) as store:
                held = held_out_for(store.labelled_images(), candidate.info.metadata)
        except (StoreError, HeldOutError) as exc:
            log.info("canary: no wardrobe items to measure on (%s)", exc)
            return None
        return (to_model_input(held.images), held.labels) if len(held) else None

    return items


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signature(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class ModelSwitch:
    """The served model of one worker and the ways to replace it."""

    path: Path
    """The served file: WARDROBE_MODEL, or the shipped model the runtime chose."""
    load: Callable[[Path], Classifier]
    """Open, check and warm up a model file (contract/runtime.py's load_model, with this worker's settings)."""
    make_batcher: Callable[[Classifier], Batcher]
    canary_items: Callable[[Classifier], tuple[np.ndarray, list[str]] | None] = lambda _: None
    installable: bool = True
    """False when the served file is a shipped model in the repo's models/: never written to (nor beside)."""
    max_drop: float = CANARY_MAX_DROP
    grace_s: float = 30.0
    """A replaced model's batcher stays open this long for requests that took it just before the swap."""
    on_swap: Callable[[Served, Served], None] = lambda new, old: None
    first: InitVar[Classifier | None] = None
    """The model already loaded from `path` at start-up (else it is loaded here)."""
    current: Served = field(init=False)
    last: dict = field(init=False, default_factory=dict)

    def __post_init__(self, first: Classifier | None) -> None:
        self.path = Path(self.path)
        classifier = first if first is not None else self.load(self.path)
        # The bytes the classifier was made from (its SHA-256 says which), kept to write back as "previous".
        data = self.path.read_bytes()
        if _sha256(data) != classifier.info.sha256:
            raise ModelError(f"{self.path}: the file changed while the service started; start it again")
        self.current = Served(classifier, self.make_batcher(classifier), data)
        self._lock = asyncio.Lock()
        self._seen = _signature(self.path)
        self._previous_sha: str | None = None
        self._refused_sha: str | None = None

    @property
    def previous_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".previous.onnx")

    @property
    def accepted_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".accepted.json")

    def describe(self) -> dict:
        previous = self.previous_path
        return {
            "model_sha256": self.current.sha256,
            "path": str(self.path),
            "previous": str(previous) if previous.is_file() else None,
            "last": self.last,
        }

    # -- deciding ------------------------------------------------------------

    def _stage(self, data: bytes) -> Classifier:
        """Write `data` beside the served file and load it from there (contract check, warm-up)."""
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".candidate.onnx")
        os.close(fd)
        try:
            Path(tmp).write_bytes(data)
            return self.load(Path(tmp))
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _accepted_by_another_worker(self, sha: str) -> str | None:
        try:
            record = json.loads(self.accepted_path.read_text())
        except (OSError, ValueError):
            return None
        return record.get("how") if isinstance(record, dict) and record.get("sha256") == sha else None

    async def _decide(self, data: bytes, how: str) -> tuple[Classifier, Canary | None]:
        """Contract check always; the canary unless this is a rollback or another worker already decided."""
        sha = _sha256(data)
        try:
            candidate = await anyio.to_thread.run_sync(self._stage, data)
        except ModelError as exc:
            raise SwapRefused(422, f"candidate {sha[:12]}… breaks the model contract: {exc}") from None
        if how == "rollback":
            return candidate, None
        canary = await anyio.to_thread.run_sync(
            lambda: run_canary(self.current.classifier, candidate, self.canary_items(candidate), self.max_drop)
        )
        if not canary.passed:
            raise SwapRefused(409, f"candidate {sha[:12]}… refused by the canary: {canary.note}")
        return candidate, canary

    def _activate(self, classifier: Classifier, data: bytes) -> Served:
        old = self.current
        new = Served(classifier, self.make_batcher(classifier), data)
        self.current = new  # the next request takes the new model; requests in flight keep `old`
        self._previous_sha = old.sha256
        old.retired = True
        asyncio.get_running_loop().create_task(self._close_when_idle(old), name="wardrobe-retire-model")
        self.on_swap(new, old)
        return old

    async def _close_when_idle(self, served: Served) -> None:
        await asyncio.sleep(self.grace_s)
        while served.in_flight or served.batcher.queued:
            await asyncio.sleep(0.5)
        served.batcher.close()

    def _record(self, entry: dict) -> dict:
        self.last = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}
        return self.last

    # -- the three ways in --------------------------------------------------------

    async def reload(self, candidate: Path | None = None) -> dict:
        """Install `candidate` (or take the changed served file) if it passes; SwapRefused otherwise."""
        async with self._lock:
            if candidate is not None and not self.installable:
                raise SwapRefused(
                    400, f"the service serves the shipped {self.path.name}, which a reload never overwrites; set "
                    "WARDROBE_MODEL to a file of its own (e.g. a copy of models/cnn.onnx) to install models there",
                )  # fmt: skip
            source = Path(candidate) if candidate is not None else self.path
            try:
                data = await anyio.to_thread.run_sync(source.read_bytes)
            except OSError as exc:
                raise SwapRefused(400, f"candidate {source}: cannot read it ({exc.strerror or exc})") from None
            sha = _sha256(data)
            if sha == self.current.sha256:
                return self._record({"result": "unchanged", "model_sha256": sha})
            how = "reload" if candidate is not None else "file"
            followed = self._accepted_by_another_worker(sha) if candidate is None else None
            try:
                classifier, canary = await self._decide(data, "rollback" if followed else how)
            except SwapRefused as exc:
                if sha != self._refused_sha:
                    log.warning("model swap refused (%s): %s; still serving %s", how, exc.message, self.current.sha256)
                self._refused_sha = sha
                self._record({"result": "refused", "candidate_sha256": sha, "reason": exc.message})
                raise
            old_data = self.current.data
            if candidate is not None:  # keep the model it replaces, say what was decided, then install
                await anyio.to_thread.run_sync(write_bytes, self.previous_path, old_data)
                await anyio.to_thread.run_sync(self._write_accepted, sha, "reload")
                await anyio.to_thread.run_sync(write_bytes, self.path, data)
                self._seen = _signature(self.path)
            elif not followed and self.installable:  # replaced under us: its predecessor lives on only in memory
                await anyio.to_thread.run_sync(write_bytes, self.previous_path, old_data)
            old = self._activate(classifier, data)
            entry = {"result": "swapped", "how": followed and "followed" or how, "model_sha256": sha,
                     "previous_sha256": old.sha256, "canary": canary.as_dict() if canary else None}  # fmt: skip
            log.info("model swapped (%s): now serving %s, previous %s kept at %s",
                     entry["how"], sha, old.sha256, self.previous_path)  # fmt: skip
            return self._record(entry)

    async def rollback(self) -> dict:
        """Put the previous model back (contract check only: the person asked for it)."""
        async with self._lock:
            if not self.installable:
                raise SwapRefused(400, f"the service serves the shipped {self.path.name}; nothing to roll back to")
            try:
                data = await anyio.to_thread.run_sync(self.previous_path.read_bytes)
            except FileNotFoundError:
                raise SwapRefused(409, f"no previous model at {self.previous_path} to roll back to") from None
            sha = _sha256(data)
            classifier, _ = await self._decide(data, "rollback")
            old_data = self.current.data
            await anyio.to_thread.run_sync(self._write_accepted, sha, "rollback")
            await anyio.to_thread.run_sync(write_bytes, self.previous_path, old_data)
            await anyio.to_thread.run_sync(write_bytes, self.path, data)
            self._seen = _signature(self.path)
            old = self._activate(classifier, data)
            log.info("model rolled back: now serving %s, previous %s kept at %s", sha, old.sha256, self.previous_path)
            return self._record({"result": "swapped", "how": "rollback", "model_sha256": sha,
                                 "previous_sha256": old.sha256, "canary": None})  # fmt: skip

    def _write_accepted(self, sha: str, how: str) -> None:
        record = {"sha256": sha, "how": how, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_bytes(self.accepted_path, (json.dumps(record) + "\n").encode())

    async def watch(self, interval_s: float = WATCH_INTERVAL_S) -> None:
        """Poll the served file; when it was replaced, decide about it like a reload."""
        while True:
            await asyncio.sleep(interval_s)
            signature = _signature(self.path)
            if signature == self._seen:
                continue
            self._seen = signature
            if signature is None:
                log.warning("served model file %s is gone; still serving %s", self.path, self.current.sha256)
                continue
            try:
                await self.reload()
            except SwapRefused:
                pass  # logged by reload(); the old model keeps serving
            except Exception:  # a watcher that dies stops all later swaps: log and go on
                log.exception("model watch: unexpected error while checking %s", self.path)

    def close(self) -> None:
        self.current.batcher.close()


# ---------------------------------------------------------------------------
# HTTP: /admin/reload, /admin/rollback, /admin/model, and the model on /readyz


def _authorized(request: Request, token: str) -> JSONResponse | None:
    """None if the request carries the admin token; else the 401 to answer."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    why = ("WARDROBE_TOKEN is not set on the server, so model administration is off" if not token
           else "send 'Authorization: Bearer <WARDROBE_TOKEN>'")  # fmt: skip
    return JSONResponse({"error": f"{request.url.path} needs the token: {why}"}, status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="wardrobe-admin"'})  # fmt: skip


async def _candidate(request: Request) -> Path | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise SwapRefused(413, f"JSON body over the limit of {MAX_JSON_BYTES:,} bytes")
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SwapRefused(400, f'malformed JSON body ({exc}); send {{"model": "<path to .onnx>"}} or nothing') from None
    except RecursionError:  # json's parser recurses per nesting level
        raise SwapRefused(400, 'JSON body nested too deep; send {"model": "<path to .onnx>"} or nothing') from None
    if not isinstance(data, dict) or set(data) - {"model"} or not isinstance(data.get("model", ""), str):
        raise SwapRefused(400, 'the JSON body may only hold "model": the path of the candidate .onnx file')
    return Path(data["model"]) if data.get("model") else None


def admin_app(token: str, switch: Callable[[], ModelSwitch]) -> Starlette:
    """The admin endpoints, mounted at /admin; `switch()` gives this worker's ModelSwitch."""

    async def reload(request: Request) -> JSONResponse:
        if refused := _authorized(request, token):
            return refused
        try:
            return JSONResponse(await switch().reload(await _candidate(request)))
        except SwapRefused as exc:
            return JSONResponse({"error": exc.message, "model_sha256": switch().current.sha256}, status_code=exc.status)

    async def rollback(request: Request) -> JSONResponse:
        if refused := _authorized(request, token):
            return refused
        try:
            return JSONResponse(await switch().rollback())
        except SwapRefused as exc:
            return JSONResponse({"error": exc.message, "model_sha256": switch().current.sha256}, status_code=exc.status)

    async def model(request: Request) -> JSONResponse:
        if refused := _authorized(request, token):
            return refused
        return JSONResponse(switch().describe())

    return Starlette(routes=[
        Route("/reload", reload, methods=["POST"]),
        Route("/rollback", rollback, methods=["POST"]),
        Route("/model", model, methods=["GET"]),
    ])  # fmt: skip


class ModelOnReadyz:
    """/readyz answers, when ready, `{"ready": true, "model": path, "model_sha256": ...}` instead of
    BentoML's empty body: which file is being served."""

    def __init__(self, app: ASGIApp, *, switch: Callable[[], ModelSwitch | None]):
        self.app = app
        self.switch = switch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/readyz":
            return await self.app(scope, receive, send)
        status: list[int] = []

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                if message["status"] != 200:
                    await send(message)
            elif status and status[0] != 200:
                await send(message)

        await self.app(scope, receive, capture)
        switch = self.switch()
        if status and status[0] == 200:
            served = switch.current if switch else None
            body = {
                "ready": True,
                "model": str(served.classifier.info.path) if served else None,
                "model_sha256": served.sha256 if served else None,
            }
            await JSONResponse(body)(scope, receive, send)
