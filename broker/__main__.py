"""Allow ``python -m broker``."""

from broker.cli import main

raise SystemExit(main())
