"""The template step: report.json -> one self-contained HTML page (figures inlined as base64
PNG, no external requests, print CSS), rendered by the Jinja2 template
`report/templates/report.html.j2`.

The promise "every number on the page comes from report.json" is kept by construction:

- the template sees the report only as `r`, in which every value carries its JSON path (`Ref`);
- a value reaches the page only through the `num` filter, which formats it and marks it
  `<span class="num" data-key=PATH data-fmt=FMT>` (or `text`, for strings where markup cannot go);
- printing a value of the report, or any number, without them is an error, and so is a key the
  report does not have (`StrictUndefined`: a mistyped key fails the render instead of hiding).

A test checks the promise from the outside: every span's text is its key's value, formatted, and
the prose between the spans holds no digits.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import jinja2
from markupsafe import Markup

TEMPLATE = "report.html.j2"


class ReportKeyError(LookupError):
    """The template asked for a key (or index) that report.json does not have."""


class Ref:
    """A value of report.json with its dotted JSON path ('evaluation.per_class.3.f1').

    In the template, `r.key` and `r[key]` walk the report and return Refs (a missing key raises
    ReportKeyError); iterating a list yields its items as Refs; `in`, `length` and truth testing
    look at the value.
    """

    __slots__ = ("_path", "_value")

    def __init__(self, path: str, value):
        self._path = path
        self._value = value

    def __getitem__(self, key) -> Ref:
        value = self._value
        where = f"{self._path}.{key}" if self._path else str(key)
        if isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
            return Ref(f"{self._path}.{key % len(value)}", value[key])
        if isinstance(value, dict) and key in value:
            return Ref(where, value[key])
        raise ReportKeyError(f"report.json has no key {where!r}")

    def __iter__(self):
        if not isinstance(self._value, list):
            raise TypeError(f"{self._path}: only lists of report.json can be looped over")
        return (Ref(f"{self._path}.{i}", v) for i, v in enumerate(self._value))

    def __len__(self) -> int:
        return len(self._value)

    def __contains__(self, key) -> bool:
        return key in self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Ref({self._path!r}, {self._value!r})"


FORMATS = re.compile(r"(str|int|p|sha|pct\d|f\d)")
"""str, int (thousands separated), p (a p-value), sha (first 16 characters), pctN (percent, N
decimals), fN (N decimals)."""


def format_value(value, fmt: str) -> str:
    """How a value of the report is written in the page."""
    if not FORMATS.fullmatch(fmt):
        raise ValueError(f"unknown number format {fmt!r}")
    if value is None:
        return "n/a"
    if fmt == "str":
        return str(value)
    if fmt == "int":
        return f"{int(value):,}"
    if fmt.startswith("pct"):
        return f"{100 * float(value):.{int(fmt[3:])}f}%"
    if fmt.startswith("f"):
        return f"{float(value):.{int(fmt[1:])}f}"
    if fmt == "p":
        return "< 1e-300" if value == 0 else f"{float(value):.3g}"  # 0.0 means it underflowed
    return str(value)[:16]  # sha


def _ref(value, filter_name: str) -> Ref:
    if not isinstance(value, Ref):
        raise TypeError(f"the {filter_name} filter writes values of report.json only (r.…), got {value!r}")
    return value


def num(value: Ref, fmt: str = "f3") -> Markup:
    """A value of report.json, formatted and marked with its JSON path."""
    ref = _ref(value, "num")
    text = format_value(ref._value, fmt)
    return Markup('<span class="num" data-key="{}" data-fmt="{}">{}</span>').format(ref._path, fmt, text)


def ci(value: Ref, fmt: str = "pct2") -> Markup:
    """An interval [lo, hi] of report.json as '[lo, hi]', both ends through `num`."""
    ref = _ref(value, "ci")
    return Markup("[{}, {}]").format(num(ref[0], fmt), num(ref[1], fmt))


def text(value: Ref) -> str:
    """A string of report.json as plain text, where a marked span cannot go (<title>, alt);
    numbers must go through `num`."""
    ref = _ref(value, "text")
    if not isinstance(ref._value, str):
        raise TypeError(f"{ref._path}: the text filter writes strings only; write numbers with num")
    return ref._value


def filename(value: Ref) -> str:
    """The last part of a path of report.json ('models/cnn.onnx' -> 'cnn.onnx')."""
    return Path(text(value)).name


def given(value) -> bool:
    """Jinja test `is given`: the report holds a value there (not null)."""
    return _ref(value, "given")._value is not None


def _finalize(value):
    """Every {{ … }} of the template passes here: values of the report and numbers must have
    gone through a filter that marks where they came from."""
    if isinstance(value, Ref):
        raise TypeError(f"{value._path}: write values of report.json with the num filter, not bare")
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise TypeError(f"the number {value!r} is not from report.json; only num may write numbers")
    return value


class _Environment(jinja2.Environment):
    """`x.key` and `x[key]` on the report go straight to `Ref`, so a key the report does not
    have raises instead of becoming Undefined; a misspelt template variable is StrictUndefined."""

    def getattr(self, obj, attribute):
        return obj[attribute] if isinstance(obj, Ref) else super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        return obj[argument] if isinstance(obj, Ref) else super().getitem(obj, argument)


def environment(fig_dir: Path) -> jinja2.Environment:
    env = _Environment(
        loader=jinja2.PackageLoader("report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(num=num, ci=ci, text=text, filename=filename)
    env.tests["given"] = given

    def figure(value: Ref, caption: str) -> Markup:
        """The PNG report.json names there, inlined, under `caption`; nothing when it names none."""
        ref = _ref(value, "figure")
        if ref._value is None:
            return Markup("")
        encoded = base64.b64encode((fig_dir / ref._value).read_bytes()).decode("ascii")
        return Markup(
            '<figure><img alt="{}" src="data:image/png;base64,{}"><figcaption>{}</figcaption></figure>'
        ).format(Markup(caption).striptags(), encoded, Markup(caption))

    env.globals["figure"] = figure
    return env


def render(report: dict, fig_dir: Path) -> str:
    """The whole page as one string; the figures are read from `fig_dir`."""
    try:
        return environment(fig_dir).get_template(TEMPLATE).render(r=Ref("", report))
    except ReportKeyError as exc:
        raise ReportKeyError(f"{TEMPLATE}: {exc}") from None
