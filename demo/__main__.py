"""Allow ``python -m demo`` (what ``make demo`` runs): dev IdP + whoami backend + gateway."""

from demo.launcher import main

raise SystemExit(main())
