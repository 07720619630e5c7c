"""``python -m leasehold.api.cli``: the ``leasehold`` command."""

from __future__ import annotations

from leasehold.api.cli.main import main

raise SystemExit(main())
