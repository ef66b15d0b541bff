"""See what a running tree does: Prometheus metrics, health and readiness, a live view.

Needs the ``metrics`` extra (``pip install foxactors[metrics]``: prometheus-client,
hypercorn, starlette); ``foxactors top`` needs the ``top`` extra too. See
docs/observability.md.
"""

from __future__ import annotations

from . import _extra as _extra  # first: a missing extra gives an install hint
from ._attach import attach_http as attach_http
from ._attach import check_http_port as check_http_port
from ._health import health as health
from ._health import is_ready as is_ready
from ._health import readiness as readiness
from ._health import tree as tree
from ._live import top as top
from ._merge import merge as merge
from ._merge import merge_families as merge_families
from ._metrics import TreeCollector as TreeCollector
from ._metrics import render as render
from ._reading import Intake as Intake
from ._reading import Reading as Reading
from ._reading import read as read
from ._server import DEFAULT_PORT as DEFAULT_PORT
from ._server import HttpServer as HttpServer
from ._server import HttpStatistics as HttpStatistics
from ._server import http_server as http_server
from ._server import with_http as with_http
