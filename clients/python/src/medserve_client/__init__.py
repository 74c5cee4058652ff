"""MedServe's Python client and the ``medserve`` command.

>>> from medserve_client import Client
>>> Client("http://127.0.0.1:3000").predict("breast-cancer", [{"mean_radius": 17.99, ...}])  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from medserve_client.client import Client, Model, stack_outputs
from medserve_client.errors import (
    AccessDeniedError,
    EndpointUnreachableError,
    InputFileError,
    MedServeError,
    NoCredentialsError,
    NotFoundError,
    PayloadTooLargeError,
    ProblemError,
)

__all__ = [
    "AccessDeniedError",
    "Client",
    "EndpointUnreachableError",
    "InputFileError",
    "MedServeError",
    "Model",
    "NoCredentialsError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProblemError",
    "__version__",
    "stack_outputs",
]
