"""``python -m usersignals``: the same CLI as the ``usersignals`` script."""

from __future__ import annotations

from usersignals.cli import main

main()
