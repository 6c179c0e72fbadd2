"""service.settings: WARDROBE_* variables are read once, checked, and name themselves when wrong."""

from __future__ import annotations

import pytest

from service.settings import Settings, threads_from_env


def test_unset_variables_keep_the_defaults():
    assert Settings.from_env({}) == Settings()


def test_variables_are_parsed_into_their_types(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    settings = Settings.from_env(
        {
            "WARDROBE_MODEL": str(model),
            "WARDROBE_MAX_BATCH_SIZE": "32",
            "WARDROBE_MAX_LATENCY_MS": "2.5",
            "WARDROBE_MAX_REQUEST_BYTES": "8_000_000",
            "WARDROBE_ACCESS_LOG": "yes",
            "WARDROBE_BODY_IDLE_S": "2.5",
            "WARDROBE_BODY_MIN_RATE": "0",
            "WARDROBE_MAX_CONNECTIONS": "100",
        }
    )
    assert (settings.body_idle_s, settings.body_min_rate, settings.max_connections) == (2.5, 0, 100)
    assert settings.model == model
    assert settings.max_batch_size == 32
    assert settings.max_latency_ms == 2.5
    assert settings.max_request_bytes == 8_000_000
    assert settings.access_log is True


@pytest.mark.parametrize(
    "variable, value, message",
    [
        (
            "WARDROBE_MAX_BATCH_SIZE",
            "lots",
            "WARDROBE_MAX_BATCH_SIZE must be a whole number, got 'lots'",
        ),
        ("WARDROBE_QUEUE_BOUND", "0", "WARDROBE_QUEUE_BOUND must be at least 1, got 0"),
        ("WARDROBE_MAX_LATENCY_MS", "-5", "WARDROBE_MAX_LATENCY_MS must be 0 or more"),
        ("WARDROBE_ACCESS_LOG", "maybe", "WARDROBE_ACCESS_LOG must be 1/0"),
        ("WARDROBE_DEVICE", "tpu", "WARDROBE_DEVICE must be auto, cpu or cuda, got 'tpu'"),
        ("WARDROBE_WORKERS", "-1", "WARDROBE_WORKERS must be 0"),
        ("WARDROBE_TOP_K", "11", "WARDROBE_TOP_K must be at most 10"),
        ("WARDROBE_MODEL", "/nonexistent/model.onnx", "WARDROBE_MODEL: /nonexistent/model.onnx"),
        ("WARDROBE_MAX_CONNECTIONS", "0", "WARDROBE_MAX_CONNECTIONS must be at least 1, got 0"),
        ("WARDROBE_BODY_MIN_RATE", "-1", "WARDROBE_BODY_MIN_RATE must be 0 (off) or more bytes/s, got -1"),
        ("WARDROBE_BODY_IDLE_S", "0", "WARDROBE_BODY_IDLE_S must be positive and below WARDROBE_TIMEOUT_S (30)"),
        ("WARDROBE_BODY_IDLE_S", "30", "WARDROBE_BODY_IDLE_S must be positive and below WARDROBE_TIMEOUT_S (30)"),
        ("WARDROBE_BODY_IDLE_S", "soon", "WARDROBE_BODY_IDLE_S must be a number, got 'soon'"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(variable, value, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env({variable: value})


def test_automatic_values_fit_the_machine():
    cpu = Settings().resolved(gpu=False, cpu_count=2)
    assert (cpu.workers, cpu.threads, cpu.max_batch_size, cpu.max_latency_ms) == (2, 1, 64, 0.0)
    gpu = Settings().resolved(gpu=True, cpu_count=16)
    assert (gpu.workers, gpu.threads, gpu.max_batch_size, gpu.max_latency_ms) == (1, 16, 256, 2.0)
    chosen = Settings(workers=1, max_latency_ms=5).resolved(gpu=False, cpu_count=8)
    assert (chosen.workers, chosen.threads, chosen.max_latency_ms) == (1, 8, 5)


def test_the_wardrobe_database_and_token_are_read_and_the_token_is_never_printed():
    settings = Settings.from_env({"WARDROBE_DB": "postgresql://u@db/w", "WARDROBE_TOKEN": "hunter2"})
    assert (settings.db, settings.token) == ("postgresql://u@db/w", "hunter2")
    assert "hunter2" not in repr(settings) and "hunter2" not in repr(settings.resolved(gpu=False, cpu_count=2))
    with pytest.raises(ValueError, match="^WARDROBE_DB: unsupported database 'mysql'"):
        Settings.from_env({"WARDROBE_DB": "mysql://u@db/w"})


def test_threads_come_from_the_environment_and_are_checked():
    assert threads_from_env({}) is None and threads_from_env({"WARDROBE_THREADS": " "}) is None
    assert threads_from_env({"WARDROBE_THREADS": "3"}) == 3
    with pytest.raises(ValueError, match="WARDROBE_THREADS must be a whole number, got 'many'"):
        threads_from_env({"WARDROBE_THREADS": "many"})
    with pytest.raises(ValueError, match=r"WARDROBE_THREADS must be 0 \(automatic\) or more, got -2"):
        threads_from_env({"WARDROBE_THREADS": "-2"})
