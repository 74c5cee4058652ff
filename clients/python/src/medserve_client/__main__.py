"""``python -m medserve_client``: the ``medserve`` command."""

from __future__ import annotations

from medserve_client.cli import run

run()
