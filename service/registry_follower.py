"""Each worker follows the registry's champion: the model it serves is the one the registry names.

On PostgreSQL the worker LISTENs on the registry's channel (a promotion or a
rollback NOTIFYs it when its transaction commits) and also looks every
LISTEN_TIMEOUT_S in case a notification was lost with a connection; on SQLite,
which has no notifications, it polls the champion every POLL_S (one indexed
read). When the champion changes, the worker reads the model's bytes from the
registry — never from a shared filesystem — opens and checks them, switches
(service/model_switch.py: requests in flight finish on the old model), and
records in `model_workers` that it serves the new one, so a promotion can count
the workers that follow it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

import anyio.to_thread
import psycopg

from contract.runtime import Classifier, ModelError
from contract.store.registry import CHANNEL, Registry
from service.model_switch import ModelSwitch

log = logging.getLogger("bentoml.wardrobe")

POLL_S = 0.25
"""SQLite: how often a worker reads the champion's SHA-256."""
LISTEN_TIMEOUT_S = 5.0
"""PostgreSQL: the longest a worker waits for a notification before looking anyway."""
RECONNECT_S = 1.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def replica_name() -> str:
    """The server this worker belongs to: its parent, the process that started every worker of one `serve`."""
    return f"{socket.gethostname()}:{os.getppid()}"


class RegistryFollower:
    """Keeps one worker's ModelSwitch on the registry's champion."""

    def __init__(self, registry: Registry, models: ModelSwitch, load: Callable[[bytes, str], Classifier]):
        self.registry = registry
        self.models = models
        self.load = load
        """Open, check and warm up a model from its bytes (the service's loader, with this worker's settings)."""
        self.worker = worker_name()
        self.replica = replica_name()
        self._broken: str | None = None  # a champion this worker cannot open: do not retry it on every look
        self._following = asyncio.Lock()

    async def confirm(self) -> None:
        await anyio.to_thread.run_sync(self.registry.confirm, self.worker, self.replica, self.models.sha256)

    async def follow(self) -> bool:
        """Look at the champion once and switch to it if it changed; True if this worker switched."""
        async with self._following:
            sha = await anyio.to_thread.run_sync(self.registry.champion_sha256)
            if sha is None or sha == self.models.sha256 or sha == self._broken:
                return False
            started = time.perf_counter()
            data = await anyio.to_thread.run_sync(self.registry.onnx_bytes, sha)
            try:
                classifier = await anyio.to_thread.run_sync(self.load, data, f"registry model {sha[:12]}")
            except ModelError as exc:
                self._broken = sha
                log.error("cannot serve the champion %s (%s); still serving %s", sha, exc, self.models.sha256)
                return False
            self.models.switch_to(classifier)
            await self.confirm()
            log.info("following the registry: serving %s, %.0f ms after seeing it", sha,
                     (time.perf_counter() - started) * 1000)  # fmt: skip
            return True

    async def run(self) -> None:
        """Follow the champion until cancelled (a task started when the worker starts)."""
        await self.confirm()
        while True:
            try:
                if self.registry.is_postgresql:
                    await self._listen()
                else:
                    await asyncio.sleep(POLL_S)
                    await self.follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database hiccup must not end the following: say so, try again
                log.warning("registry follower: %s: %s; retrying in %g s", type(exc).__name__, exc, RECONNECT_S)
                await asyncio.sleep(RECONNECT_S)

    async def _listen(self) -> None:
        url = self.registry.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
            await connection.execute(f"LISTEN {CHANNEL}")
            await self.follow()  # whatever changed before this connection listened
            while True:
                async for _ in connection.notifies(timeout=LISTEN_TIMEOUT_S, stop_after=1):
                    pass
                await self.follow()

    async def wait_for_replica(self, sha: str, workers: int, bound_s: float) -> dict:
        """Wait up to `bound_s` until `workers` workers of this replica serve `sha`; how many do, here and in all."""
        deadline = time.monotonic() + bound_s
        while True:
            rows = await anyio.to_thread.run_sync(self.registry.confirmations)
            serving = [r for r in rows if r.model_sha256 == sha]
            mine = sum(r.replica == self.replica for r in serving)
            if mine >= workers or time.monotonic() >= deadline:
                return {"this_replica": mine, "this_replica_workers": workers, "all_replicas": len(serving)}
            await asyncio.sleep(0.05)

    async def forget(self) -> None:
        await anyio.to_thread.run_sync(self.registry.forget_worker, self.worker)
