"""Results straight into a Parquet file, one row group per user batch, and reading them back.

Columns: ``user`` (int64, row of the query), ``indices`` (fixed-size list of k int64), ``scores`` and
``probs`` (fixed-size lists of k float32), ``log_normalizer`` (float64); the file metadata records k and
the temperature. pyarrow is imported lazily.
"""

from __future__ import annotations

import numpy as np

from ..result import TopK

__all__ = ["ParquetSink", "read_topk_parquet"]


def _pyarrow():
    from .._optional import require

    pa = require("pyarrow", extra="ray", feature="Parquet output")
    return pa, require("pyarrow.parquet", extra="ray", feature="Parquet output")


class ParquetSink:
    """Append :class:`~mmrec_fast.distributed.UserBatch` results to one Parquet file."""

    def __init__(self, path, k: int, temperature: float, *, compression: str = "snappy"):
        pa, pq = self._pa, self._pq = _pyarrow()
        self.k = k
        self.schema = pa.schema(
            [
                ("user", pa.int64()),
                ("indices", pa.list_(pa.int64(), k)),
                ("scores", pa.list_(pa.float32(), k)),
                ("probs", pa.list_(pa.float32(), k)),
                ("log_normalizer", pa.float64()),
            ],
            metadata={b"mmrec_fast.k": str(k).encode(), b"mmrec_fast.temperature": repr(temperature).encode()},
        )
        self.writer = pq.ParquetWriter(str(path), self.schema, compression=compression)
        self.rows = 0

    def _list(self, values: np.ndarray):
        pa = self._pa
        return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values).ravel()), self.k)

    def write(self, batch) -> None:
        pa, r = self._pa, batch.result
        table = pa.Table.from_arrays(
            [
                pa.array(np.arange(batch.start, batch.stop, dtype=np.int64)),
                self._list(r.indices),
                self._list(r.scores),
                self._list(r.probs),
                pa.array(r.log_normalizer),
            ],
            schema=self.schema,
        )
        self.writer.write_table(table)
        self.rows += len(r)

    def close(self) -> None:
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_topk_parquet(path) -> TopK:
    """Load a file written by :class:`ParquetSink` back into one :class:`~mmrec_fast.TopK` (all of it:
    for large results read row groups with pyarrow instead)."""
    _, pq = _pyarrow()
    table = pq.read_table(str(path))
    meta = table.schema.metadata or {}
    k = int(meta[b"mmrec_fast.k"])
    temperature = float(meta[b"mmrec_fast.temperature"])
    order = np.argsort(table["user"].to_numpy(), kind="stable")

    def lists(name, dtype):
        flat = table[name].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return np.ascontiguousarray(flat.astype(dtype, copy=False).reshape(-1, k)[order])

    lse = table["log_normalizer"].to_numpy()[order]
    return TopK(lists("indices", np.int64), lists("scores", np.float32), lse, temperature)
