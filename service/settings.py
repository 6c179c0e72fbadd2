"""The service's settings: read once from WARDROBE_* environment variables and checked.

A bad value stops the service at start-up with a message naming the variable;
the rest of the service trusts these values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from contract.devices import check_device
from contract.preprocess import DEFAULT_MAX_PIXELS
from contract.store import database_url

MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    model: Path | None = None
    """WARDROBE_MODEL: the ONNX model to serve (None: the shipped CNN, models/cnn.onnx)."""
    device: str = "auto"
    """WARDROBE_DEVICE: auto (CUDA when a GPU is usable, else CPU), cpu or cuda."""
    workers: int = 0
    """WARDROBE_WORKERS: server processes (0: one per CPU core, or 1 on a GPU)."""
    threads: int = 0
    """WARDROBE_THREADS: onnxruntime intra-op threads per worker (0: cores / workers)."""
    max_batch_size: int = 0
    """WARDROBE_MAX_BATCH_SIZE: most images in one onnxruntime call (0: 64 on CPU, 256 on GPU)."""
    max_latency_ms: float = -1.0
    """WARDROBE_MAX_LATENCY_MS: longest a request waits for a batch to fill (-1: 0 CPU, 2 GPU)."""
    queue_bound: int = 256
    """WARDROBE_QUEUE_BOUND: checked requests waiting for the model per worker; more get 503."""
    max_files: int = 64
    """WARDROBE_MAX_FILES: most files in one request (413 above)."""
    max_file_bytes: int = 10 * MiB
    """WARDROBE_MAX_FILE_BYTES: largest single upload (413 above)."""
    max_request_bytes: int = 32 * MiB
    """WARDROBE_MAX_REQUEST_BYTES: largest request body (413 above, checked while reading)."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    """WARDROBE_MAX_PIXELS: largest decoded image, width x height (400 above: a bomb)."""
    decode_pixels: int = DEFAULT_MAX_PIXELS
    """WARDROBE_DECODE_PIXELS: decoded pixels of large images in memory at once per worker (one image
    over it runs alone); further large uploads wait (service/decode_budget.py)."""
    decode_threads: int = 2
    """WARDROBE_DECODE_THREADS: large images decoded at once per worker (small ones decode inline)."""
    decode_queue: int = 16
    """WARDROBE_DECODE_QUEUE: large uploads waiting for the decode budget per worker; more, or a wait
    over half of TIMEOUT_S, get 503 with Retry-After."""
    top_k: int = 3
    """WARDROBE_TOP_K: entries in each answer's top_k list."""
    timeout_s: float = 30.0
    """WARDROBE_TIMEOUT_S: a request still unanswered after this gets 504."""
    body_idle_s: float = 5.0
    """WARDROBE_BODY_IDLE_S: an upload that sends nothing for this long gets 408 (below TIMEOUT_S)."""
    body_min_rate: int = 5000
    """WARDROBE_BODY_MIN_RATE: bytes/s an upload must average after the first BODY_IDLE_S (408 below; 0: off)."""
    max_connections: int = 1024
    """WARDROBE_MAX_CONNECTIONS: requests in progress per worker, uploads still arriving included
    (503 with Retry-After above, answered before reading the body; probes and /metrics exempt)."""
    access_log: bool = False
    """WARDROBE_ACCESS_LOG: log every request (off by default: it costs throughput on small models)."""
    tracing: bool = False
    """WARDROBE_TRACING: OpenTelemetry spans for /classify (off by default: a span per request costs CPU)."""
    db: str = ""
    """WARDROBE_DB: the wardrobe's database, a SQLite file path or a postgresql:// URL
    (empty: wardrobe/wardrobe.db in the user's data directory; see docs/wardrobe.md)."""
    replicated: bool = False
    """WARDROBE_REPLICATED: this server is one of several replicas (default: true inside a Kubernetes
    pod, where KUBERNETES_SERVICE_HOST is set); then WARDROBE_DB must be a shared PostgreSQL database,
    because a SQLite file per replica would split the wardrobe between them."""
    token: str = field(default="", repr=False)
    """WARDROBE_TOKEN: the wardrobe endpoints want `Authorization: Bearer <token>` (empty: no token,
    and then they answer only when the server listens on a loopback address)."""
    allowed_hosts: str = ""
    """WARDROBE_ALLOWED_HOSTS: more `Host` names, comma-separated, that a server without a token answers
    (it answers only localhost and loopback addresses otherwise: a defence against DNS rebinding)."""
    admin_token: str = field(default="", repr=False)
    """WARDROBE_ADMIN_TOKEN: /admin/* (the model registry) wants `Authorization: Bearer <admin token>`;
    empty: model administration over HTTP is off (403). Must differ from WARDROBE_TOKEN."""

    def __post_init__(self) -> None:
        check_device(self.device, "WARDROBE_DEVICE")
        for name in ("workers", "threads", "max_batch_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{_var(name)} must be 0 (automatic) or more, got {getattr(self, name)!r}")
        for name in ("queue_bound", "max_files", "max_file_bytes", "max_request_bytes", "max_pixels",
                     "top_k", "max_connections", "decode_pixels", "decode_threads", "decode_queue"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{_var(name)} must be at least 1, got {getattr(self, name)!r}")
        if self.max_latency_ms < 0 and self.max_latency_ms != -1:
            raise ValueError(f"WARDROBE_MAX_LATENCY_MS must be 0 or more (-1: automatic), got {self.max_latency_ms!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"WARDROBE_TIMEOUT_S must be positive, got {self.timeout_s!r}")
        if self.body_min_rate < 0:
            raise ValueError(f"WARDROBE_BODY_MIN_RATE must be 0 (off) or more bytes/s, got {self.body_min_rate!r}")
        if not 0 < self.body_idle_s < self.timeout_s:
            # At or above the request timeout, a stalled upload would get the timeout's 504 instead of a 408.
            raise ValueError(
                f"WARDROBE_BODY_IDLE_S must be positive and below WARDROBE_TIMEOUT_S ({self.timeout_s:g}), "
                f"got {self.body_idle_s!r}"
            )
        if self.top_k > 10:
            raise ValueError(f"WARDROBE_TOP_K must be at most 10 (the classes), got {self.top_k!r}")
        if any(not name.replace(".", "").replace("-", "").isalnum() for name in self.allowed_host_names):
            raise ValueError(f"WARDROBE_ALLOWED_HOSTS must be host names separated by commas (no scheme, "
                             f"no port), got {self.allowed_hosts!r}")  # fmt: skip
        url = database_url(self.db)  # a ValueError naming WARDROBE_DB if it is not a usable path or URL
        if self.replicated and url.get_backend_name() == "sqlite":
            raise ValueError(
                "WARDROBE_DB: replicas need one shared PostgreSQL database (postgresql://...), got "
                f"{'the default SQLite file' if not self.db else 'a SQLite file'}, which each replica would keep "
                "for itself; set WARDROBE_REPLICATED=false to run a single replica on SQLite"
            )
        if self.admin_token and self.admin_token == self.token:
            raise ValueError(
                "WARDROBE_ADMIN_TOKEN must differ from WARDROBE_TOKEN: administration has its own credential"
            )
        if self.model is not None and not self.model.is_file():
            raise ValueError(f"WARDROBE_MODEL: {self.model} is not a file")

    @property
    def allowed_host_names(self) -> frozenset[str]:
        """WARDROBE_ALLOWED_HOSTS as a set of lower-case names."""
        return frozenset(name.strip().lower().rstrip(".") for name in self.allowed_hosts.split(",") if name.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from WARDROBE_* variables; unset or empty ones keep their defaults."""
        environ = os.environ if environ is None else environ
        # Every Kubernetes pod has KUBERNETES_SERVICE_HOST: there, assume replicas unless told otherwise.
        values: dict[str, object] = {"replicated": bool(environ.get("KUBERNETES_SERVICE_HOST"))}
        for f in fields(cls):
            raw = environ.get(_var(f.name), "").strip()
            if raw:
                values[f.name] = _parse(_var(f.name), raw, type(f.default), f.name)
        return cls(**values)

    def resolved(self, gpu: bool, cpu_count: int) -> Settings:
        """The automatic (0 / -1) values filled in for this machine."""
        workers = self.workers or (1 if gpu else max(1, cpu_count))
        return Settings(
            **{f.name: getattr(self, f.name) for f in fields(self)}
            | {
                "workers": workers,
                "threads": self.threads or max(1, cpu_count // workers),
                "max_batch_size": self.max_batch_size or (256 if gpu else 64),
                "max_latency_ms": 2.0 if gpu and self.max_latency_ms < 0 else max(self.max_latency_ms, 0.0),
            }
        )


def _var(name: str) -> str:
    return "WARDROBE_" + name.upper()


def model_path_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    """$WARDROBE_MODEL as a path, or None when unset or empty."""
    environ = os.environ if environ is None else environ
    raw = environ.get("WARDROBE_MODEL", "").strip()
    return Path(raw) if raw else None


def threads_from_env(environ: Mapping[str, str] | None = None) -> int | None:
    """$WARDROBE_THREADS as a checked whole number, or None when unset or empty."""
    environ = os.environ if environ is None else environ
    raw = environ.get("WARDROBE_THREADS", "").strip()
    if not raw:
        return None
    try:
        threads = int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"WARDROBE_THREADS must be a whole number, got {raw!r}") from None
    if threads < 0:
        raise ValueError(f"WARDROBE_THREADS must be 0 (automatic) or more, got {threads!r}")
    return threads


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(var: str, raw: str, kind: type, name: str) -> object:
    """One variable's text as the field's type, or a ValueError naming the variable."""
    # WARDROBE_MODEL and WARDROBE_THREADS are also read alone (`wardrobe predict`, the model choice):
    # the functions above are the one reading of each.
    if name == "model":
        return model_path_from_env({var: raw})
    if name == "threads":
        return threads_from_env({var: raw})
    try:
        if kind is bool:
            if raw.lower() not in _TRUE | _FALSE:
                raise ValueError
            return raw.lower() in _TRUE
        if kind is int:
            return int(raw.replace("_", ""))
        if kind is float:
            return float(raw)
        return raw
    except ValueError:
        want = {bool: "1/0, true/false, yes/no or on/off", int: "a whole number",
                float: "a number"}[kind]  # fmt: skip
        raise ValueError(f"{var} must be {want}, got {raw!r}") from None
