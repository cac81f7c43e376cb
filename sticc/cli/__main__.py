"""`python -m sticc.cli` runs the command line."""

from sticc.cli.main import main

raise SystemExit(main())
