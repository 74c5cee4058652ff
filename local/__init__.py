"""MedServe's Docker-free local runner: the SAM template's API on http://127.0.0.1:3000.

``python -m local`` (``make run``) serves it; tests use :class:`LocalApi`::

    with LocalApi(port=0) as api:
        requests.get(f"{api.url}/v1/health")
"""

from __future__ import annotations

from local.server import DEFAULT_TEMPLATE, LocalApi

__all__ = ["DEFAULT_TEMPLATE", "LocalApi"]
