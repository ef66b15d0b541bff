"""``python -m foxactors``: the same as the ``foxactors`` command."""

from __future__ import annotations

import sys

from ._cli import main

sys.exit(main())
