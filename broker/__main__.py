"""Allow ``python -m broker``."""

from broker.cli.main import main

raise SystemExit(main())
