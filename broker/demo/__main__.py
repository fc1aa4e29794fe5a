"""Allow ``python -m broker.demo``."""

from broker.demo.cli import main

raise SystemExit(main())
