"""report.render: the Jinja2 template step keeps "every number on the page comes from
report.json" by construction, fails loudly on a key the report does not have, and ships its
template in the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jinja2
import pytest

from report.render import Ref, ReportKeyError, environment, format_value

REPO = Path(__file__).resolve().parents[1]
REPORT = {
    "evaluation": {"accuracy": 0.92581, "n": 10000, "accuracy_ci": [0.9206, 0.9307]},
    "selective": {"threshold": None},
    "classes": ["T-shirt/top", "Trouser"],
    "ablation": {"path": "benchmarks/results/ablation.json"},
}


def page(source: str, tmp_path: Path, report: dict = REPORT) -> str:
    return environment(tmp_path).from_string(source).render(r=Ref("", report))


def test_num_formats_a_value_and_marks_it_with_its_json_path(tmp_path):
    out = page('{{ r.evaluation.accuracy | num("pct2") }} of {{ r.evaluation.n | num("int") }}', tmp_path)
    assert out == (
        '<span class="num" data-key="evaluation.accuracy" data-fmt="pct2">92.58%</span> of '
        '<span class="num" data-key="evaluation.n" data-fmt="int">10,000</span>'
    )
    ci = page('{{ r.evaluation.accuracy_ci | ci("f3") }}', tmp_path)
    assert 'data-key="evaluation.accuracy_ci.0" data-fmt="f3">0.921<' in ci
    assert 'data-key="evaluation.accuracy_ci.1" data-fmt="f3">0.931<' in ci


def test_loops_and_items_keep_their_paths(tmp_path):
    out = page('{% for c in r.classes %}{{ c | num("str") }};{% endfor %}', tmp_path)
    assert 'data-key="classes.1" data-fmt="str">Trouser<' in out
    # a key named like the wrapper's own fields is still the report's value
    assert ">benchmarks/results/ablation.json<" in page('{{ r.ablation.path | num("str") }}', tmp_path)


@pytest.mark.parametrize(
    "source",
    [
        '{{ r.evaluation.acuracy | num("pct2") }}',
        "{% if r.evaluation.acuracy is given %}x{% endif %}",
        "{% if r.comparisn %}x{% endif %}",
        '{{ r.classes[7] | num("str") }}',
        '{{ r.evaluation.accuracy.deeper | num("str") }}',
    ],
)
def test_a_key_the_report_does_not_have_fails_the_render(source, tmp_path):
    with pytest.raises(
        ReportKeyError,
        match=r"report\.json has no key '(evaluation\.acuracy|comparisn|classes\.7|evaluation\.accuracy\.deeper)'",
    ):
        page(source, tmp_path)


def test_a_misspelt_template_variable_fails_the_render(tmp_path):
    with pytest.raises(jinja2.UndefinedError, match="'rr' is undefined"):
        page("{% if rr %}x{% endif %}", tmp_path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ r.evaluation.accuracy }}", "evaluation.accuracy: write values of report.json with the num filter"),
        ("{{ r.classes | length }}", "the number 2 is not from report.json"),
        ('{{ 0.5 | num("pct0") }}', "the num filter writes values of report.json only"),
        ("{{ r.evaluation.n | text }}", "evaluation.n: the text filter writes strings only"),
    ],
)
def test_a_value_or_number_written_without_the_num_filter_fails_the_render(source, message, tmp_path):
    with pytest.raises(TypeError, match=message):
        page(source, tmp_path)


def test_given_tells_null_from_a_value(tmp_path):
    source = "{% if r.selective.threshold is given %}yes{% else %}no{% endif %}"
    assert page(source, tmp_path) == "no"
    assert page(source, tmp_path, {"selective": {"threshold": 0.0}}) == "yes"


def test_format_value_writes_each_format():
    assert format_value(None, "pct1") == "n/a"
    assert format_value(0.12345, "pct1") == "12.3%"
    assert format_value(0.0, "p") == "< 1e-300"
    assert format_value("ab" * 40, "sha") == "ab" * 8
    with pytest.raises(ValueError, match="unknown number format 'pct'"):
        format_value(1.0, "pct")


@pytest.mark.slow
def test_the_template_ships_in_the_wheel(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in REPO.iterdir():
        if (package / "__init__.py").is_file():
            shutil.copytree(package, src / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(src),
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        cwd=src,
    )
    (wheel,) = tmp_path.glob("*.whl")
    assert "report/templates/report.html.j2" in zipfile.ZipFile(wheel).namelist()
