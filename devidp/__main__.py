"""Allow ``python -m devidp``."""

from devidp.cli import main

raise SystemExit(main())
