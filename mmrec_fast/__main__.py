"""``python -m mmrec_fast``: same as the ``mmrec-fast`` console script."""

from .cli import main

raise SystemExit(main())
