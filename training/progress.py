"""Progress a person can follow: tqdm bars on a terminal, plain lines in a log.

tqdm redraws its bar with carriage returns and escape codes, which turn into junk in a
file or a CI log. So on a terminal the bars are tqdm's own, and anywhere else a loop
prints one plain line when it starts, one every `every_s` seconds, and one when it ends.
A single long step with nothing to count (an ONNX conversion, a quantization) prints
a line when it starts and one with its time when it ends, on a terminal or not.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO

from tqdm import tqdm


def _terminal(stream: TextIO) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


class PlainProgress:
    """The parts of tqdm's interface our loops use, printed as plain lines."""

    def __init__(self, iterable: Iterable | None, desc: str, total: int | None, stream: TextIO, every_s: float):
        self.iterable, self.desc, self.stream, self.every_s = iterable, desc, stream, every_s
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.postfix = 0, ""
        self.started = self.last = time.monotonic()
        self.closed = False
        self._line("started")

    def _line(self, what: str) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        postfix = f" ({self.postfix})" if self.postfix else ""
        print(f"{self.desc}: {what} {self.n}{of}{postfix}".rstrip(), file=self.stream, flush=True)

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._line("at")

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.postfix = ""
            self._line(f"done in {time.monotonic() - self.started:.1f} s,")

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None, leave: bool = True,
        disable: bool = False, stream: TextIO | None = None, every_s: float = 10.0):  # fmt: skip
    """A progress bar over `iterable` (or updated by hand): tqdm on a terminal, plain lines elsewhere."""
    stream = stream if stream is not None else sys.stderr
    if disable or _terminal(stream):
        return tqdm(iterable, desc=desc, total=total, leave=leave, disable=disable, file=stream)
    return PlainProgress(iterable, desc, total, stream, every_s)


@contextlib.contextmanager
def step(what: str, stream: TextIO | None = None) -> Iterator[None]:
    """One long step with nothing to count: a line when it starts, one with its time when it ends."""
    stream = stream if stream is not None else sys.stderr
    print(f"{what} ...", file=stream, flush=True)
    started = time.monotonic()
    yield
    print(f"{what}: done in {time.monotonic() - started:.1f} s", file=stream, flush=True)
