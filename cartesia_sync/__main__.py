"""``python -m cartesia_sync``: the command line."""

from .cli import main

raise SystemExit(main())
