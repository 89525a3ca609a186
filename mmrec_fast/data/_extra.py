"""Importing this checks the ``[data]`` extra (every ``mmrec_fast.data`` import runs it first)."""

from .._optional import require

for _module in ("pandas", "pyarrow"):
    require(_module, extra="data", feature="mmrec_fast.data (interaction logs, id maps, splits)")
