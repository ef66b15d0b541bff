"""Tools for testing code built on foxactors: virtual time, a harness, a pytest plugin.

``anyio_backend_options(name)`` gives the ``anyio_backend`` parameters that run a test on asyncio
and on trio, both in virtual time: whenever every task waits, the clock jumps to the
next deadline, so backoff delays and timeouts cost no wall-clock time. `Harness` runs
apps on a memory backend and waits for (`Harness.join`), runs out (`Harness.drain`) and
counts their work; `enqueued` and `assert_enqueued` tell which jobs wait. `simulate`
runs an app under a `FaultSchedule` (drawn by `fault_schedules`) and checks that no
message was lost or settled twice; `simulate_jobs` does the same for a `JobQueue`'s
worker, and checks its jobs' records against their deliveries; `simulate_tree` runs
any supervision tree under crashes. The pytest
plugin (``foxactors.testing._plugin``, loaded by itself once installed) serves them
as fixtures, with throwaway broker servers (`foxactors.testing.servers`).
"""

from __future__ import annotations

from ._clock import VirtualClock as VirtualClock
from ._clock import VirtualTimeEventLoop as VirtualTimeEventLoop
from ._clock import anyio_backend_options as anyio_backend_options
from ._clock import in_virtual_time as in_virtual_time
from ._enqueued import assert_enqueued as assert_enqueued
from ._enqueued import enqueued as enqueued
from ._faults import CancelJob as CancelJob
from ._faults import CrashActor as CrashActor
from ._faults import CrashBeforeSettle as CrashBeforeSettle
from ._faults import FaultSchedule as FaultSchedule
from ._faults import HangHandler as HangHandler
from ._faults import LoseConnection as LoseConnection
from ._faults import RaiseInHandler as RaiseInHandler
from ._faults import Redeliver as Redeliver
from ._faults import SlowHandler as SlowHandler
from ._faults import StopSystem as StopSystem
from ._faults import fault_schedules as fault_schedules
from ._harness import DrainCounts as DrainCounts
from ._harness import Harness as Harness
from ._simulate import SimulatedFault as SimulatedFault
from ._simulate import SimulationFailed as SimulationFailed
from ._simulate import SimulationResult as SimulationResult
from ._simulate import simulate as simulate
from ._simulate_jobs import JobSimulationResult as JobSimulationResult
from ._simulate_jobs import simulate_jobs as simulate_jobs
from ._simulate_tree import TreeSimulationResult as TreeSimulationResult
from ._simulate_tree import simulate_tree as simulate_tree
