"""``python -m hub``: the same as the ``calhub`` command."""

from hub.cli import main

raise SystemExit(main())
