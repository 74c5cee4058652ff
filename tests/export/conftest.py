"""TensorFlow export tests: collected only where TensorFlow is installed (``.venv-export``).

``make test`` runs them with ``.venv-export/bin/python -m pytest -m slow tests/export``.
In the runtime venv (no TensorFlow) they are not collected at all, rather than reported
as skipped; asking for them there (``-m slow tests/export``) collects nothing and pytest
exits non-zero, so a missing TensorFlow cannot pass silently.
"""

from __future__ import annotations

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("tensorflow") else ["test_*.py"]
