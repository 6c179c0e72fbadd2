"""Taking a model out of the registry (service/model_export.py): `wardrobe models export SHA256 --out FILE`
on SQLite and PostgreSQL, `wardrobe report --compare champion|SHA256`, and the Teach panel's download
(GET /wardrobe/models/{sha256}.onnx) against the real server and in headless Chromium."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from wardrobe_server import MODEL, wardrobe_server

from benchmarks.browser import watched_page
from benchmarks.registry_follow import variant
from contract.store.registry import Registry
from service import model_export, promotion
from wardrobe.cli import main


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def registry_db(database, tmp_path, monkeypatch):
    """WARDROBE_DB with the shipped model as champion and a variant of it as candidate: (champion, candidate)."""
    monkeypatch.setenv("WARDROBE_DB", database)
    other = variant(MODEL, tmp_path / "other.onnx", note="other")
    with Registry.open(database) as registry:
        champion, _ = promotion.publish(registry, MODEL.read_bytes(), "test", shipped=True)
        registry.crown_if_none(champion.sha256, "test")
        candidate, _ = promotion.publish(registry, other.read_bytes(), "test")
    return champion.sha256, candidate.sha256


def test_models_export_writes_the_model_a_sha256_or_champion_names(registry_db, tmp_path, capsys):
    champion, candidate = registry_db
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "candidate.onnx"
    assert main(["models", "export", candidate[:12], "--out", str(out)]) == 0
    assert _sha(out) == candidate
    assert f"exported: {candidate}" in capsys.readouterr().out
    assert main(["models", "export", "champion", "--out", str(out)]) == 0  # replaces the file whole
    assert _sha(out) == champion == _sha(MODEL)
    assert [p.name for p in out.parent.iterdir()] == ["candidate.onnx"]  # no temp file left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0123456789ab", "--out", "{tmp}/m.onnx"], "no model 0123456789ab in the registry"),
        (["xyz", "--out", "{tmp}/m.onnx"], "'xyz' is not a SHA-256"),
        (["champion"], "needs a SHA256 (or 'champion') and --out FILE"),
        (["champion", "--out", "{tmp}/missing/m.onnx"], "its folder {tmp}/missing does not exist"),
        (["champion", "--out", "{tmp}"], "is a folder"),
    ],
)
def test_models_export_refuses_clearly(registry_db, tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["models", "export", *args]) != 0
    assert message.replace("{tmp}", str(tmp_path)) in capsys.readouterr().err


def test_a_failed_export_leaves_the_old_file_and_no_half_written_one(registry_db, tmp_path, monkeypatch):
    champion, candidate = registry_db
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "model.onnx"
    out.write_bytes(b"the previous model")

    def power_cut(descriptor):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", power_cut)
    assert main(["models", "export", candidate, "--out", str(out)]) != 0
    assert out.read_bytes() == b"the previous model"
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]


def test_report_compare_takes_the_model_from_the_registry(registry_db, tmp_path, monkeypatch):
    champion, candidate = registry_db
    seen = []

    def run_report(args):  # the report itself is tested in test_report_cli.py; here: which model it compares
        seen.append((_sha(args.compare), args.compare.name))
        return 0

    monkeypatch.setattr("report.cli.run_report", run_report)
    for ref in ("champion", candidate[:10], str(MODEL)):
        assert main(["report", "--model", str(MODEL), "--compare", ref, "--out", str(tmp_path / "r")]) == 0
    assert seen == [(champion, f"{champion[:12]}.onnx"), (candidate, f"{candidate[:12]}.onnx"),
                    (_sha(MODEL), MODEL.name)]  # fmt: skip
    assert main(["report", "--model", str(MODEL), "--compare", "nofile.onnx", "--out", str(tmp_path / "r")]) != 0


def test_write_atomically_refuses_a_folder(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        model_export.write_atomically(tmp_path, b"x")


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="chromium not installed (make tools)")
def test_the_teach_panel_downloads_the_model_the_registry_holds(browser, tmp_path):
    from playwright.sync_api import expect

    with wardrobe_server(str(tmp_path / "w.db"), tmp_path / "server.log") as url:
        history = httpx.get(f"{url}/wardrobe/models", timeout=30).json()
        champion = history["champion"]
        answer = httpx.get(f"{url}/wardrobe/models/champion.onnx", timeout=30)
        assert answer.status_code == 200 and answer.headers["x-model-sha256"] == champion
        assert hashlib.sha256(answer.content).hexdigest() == champion
        assert httpx.get(f"{url}/wardrobe/models/{champion[:12]}.onnx", timeout=30).content == answer.content
        for ref, status, message in [("zz", 400, "'zz' is not a SHA-256"),
                                     ("0123456789ab", 404, "no model 0123456789ab in the registry")]:  # fmt: skip
            refused = httpx.get(f"{url}/wardrobe/models/{ref}.onnx", timeout=30)
            assert (refused.status_code, refused.json()["error"][: len(message)]) == (status, message)

        with watched_page(browser) as (page, watch):
            page.goto(url)
            expect(page.locator("html[data-ready=true]")).to_have_count(1, timeout=30_000)
            button = page.get_by_role("button", name=f"Download model {champion[:12]}")
            with page.expect_download() as download:
                button.click()
            assert download.value.suggested_filename == f"wardrobe-model-{champion[:12]}.onnx"
            saved = tmp_path / "saved.onnx"
            download.value.save_as(saved)
            assert _sha(saved) == champion
            expect(page.locator("#status")).to_have_text(f"Downloaded model {champion[:12]}.")
            assert watch.console_errors == [] and watch.non_local == []
