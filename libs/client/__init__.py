"""Python access to jobmesh: ``Client`` for the REST API of a running stack (``jobmesh
up``), ``Workflow`` to build a workflow in code and submit or run it.

    from jobmesh.client import Client, Workflow
"""

from __future__ import annotations

from .base import ApiError
from .builder import Workflow
from .rest import Client
from .sse import Event

__all__ = ["ApiError", "Client", "Event", "Workflow"]
