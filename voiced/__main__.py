"""``python -m voiced`` runs the command line."""

from voiced.cli import main

raise SystemExit(main())
