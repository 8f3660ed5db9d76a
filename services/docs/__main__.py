"""`python -m services.docs [--check]`: see services.docs.generate."""

from services.docs.generate import main

raise SystemExit(main())
