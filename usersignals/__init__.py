"""usersignals: live, exact user-signal metrics for AI chat products.

The stages import as ``usersignals.ingest``, ``usersignals.streams``,
``usersignals.warehouse`` and ``usersignals.dashboards``; data flows one way through them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
