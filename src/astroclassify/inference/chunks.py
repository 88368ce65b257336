"""The one batching path: prepare items one by one, run the network on full chunks, answer in input order.

Every caller that classifies or embeds many images (``OnnxPredictor.run``, ``batch``'s
workers, detector fitting, label cleaning, web batch uploads) goes through ``in_chunks``: they
differ only in how an item becomes pixels and what the network's answer becomes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from astroclassify.errors import DataError

__all__ = ["Chunked", "in_chunks"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Chunked(Generic[T, R]):
    """One item's answer (``result``), or why it has none (``error``: the exception its preparation raised)."""

    item: T
    result: R | None = None
    error: Exception | None = None


def in_chunks(
    items: Iterable[T],
    prepare: Callable[[T], np.ndarray | None],
    infer: Callable[[np.ndarray, list[T]], Sequence[R]],
    *,
    size: int = 32,
    errors: tuple[type[Exception], ...] = (DataError,),
    ahead: bool = False,
) -> Iterator[Chunked[T, R]]:
    """Each item's ``Chunked`` answer, in input order.

    ``prepare`` turns an item into an image array (an exception of ``errors`` is that item's
    error; None means it needs no network answer, as an upload stored before). ``infer``
    gets the stacked arrays of up to ``size`` items and those items, and returns one result
    per item. With ``ahead``, the next chunk is prepared on a second thread while the network
    runs (Pillow and ONNX Runtime release the GIL: bench/predict_throughput.py).
    """

    source = iter(items)

    def prepared() -> list[tuple[T, np.ndarray | None, Exception | None]]:
        """The next chunk, each item prepared as it is pulled (an upload's bytes never wait for its chunk)."""
        out: list[tuple[T, np.ndarray | None, Exception | None]] = []
        for item in itertools.islice(source, size):
            try:
                out.append((item, prepare(item), None))
            except errors as exc:
                out.append((item, None, exc))
        return out

    def answered(rows: list[tuple[T, np.ndarray | None, Exception | None]]) -> Iterator[Chunked[T, R]]:
        ready = [(item, a) for item, a, _ in rows if a is not None]
        results = iter(infer(np.stack([a for _, a in ready]), [i for i, _ in ready]) if ready else ())
        for item, array, error in rows:
            yield Chunked(item, next(results) if array is not None else None, error)

    if not ahead:
        while rows := prepared():
            yield from answered(rows)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
        next_rows = pool.submit(prepared)
        while rows := next_rows.result():
            next_rows = pool.submit(prepared)
            yield from answered(rows)
