"""``foxactors run APP --processes N``: worker processes under a supervising parent.

The parent checks the application once, then starts N children, each an ordinary
``foxactors run APP`` in a process of its own; it restarts one that dies (backoff,
restart intensity), forwards a stop to all of them, passes their log lines through
whole, and serves the merged metrics and health of all of them. See
docs/processes.md.
"""

from __future__ import annotations

from ._options import Overrides as Overrides
from ._options import add_process_options as add_process_options
from ._options import wants_processes as wants_processes
from ._orphan import follow_parent as follow_parent
from ._run import run_processes as run_processes
