from __future__ import annotations

import foxactors
import foxactors.testing

PUBLIC = {
    "AckHandle",
    "BackendError",
    "Codec",
    "CodecError",
    "DeadLetter",
    "DecodeError",
    "EncodeError",
    "Decision",
    "Delivery",
    "JsonCodec",
    "MemoryBackend",
    "Message",
    "MessageProperties",
    "Outcome",
    "OutcomeKind",
    "Priority",
    "PoolStatistics",
    "PoolStrategy",
    "RateLimitStatistics",
    "RetryPolicy",
    "SettlementError",
    "Stage",
    "Worker",
    "WorkerApp",
    "merge_message_context",
    "Breaker",
    "BreakerState",
    "BreakerStatistics",
    "TokenBucket",
    "DeadLetterSink",
    "JsonLinesSink",
    "MemorySink",
    "read_dead_letters",
    "replay_dead_letters",
    "Actor",
    "ActorCrashed",
    "ActorError",
    "ActorNotFound",
    "ActorRef",
    "ActorSnapshot",
    "ActorState",
    "ActorStopped",
    "ActorSystem",
    "AskTimeout",
    "AutoShutdown",
    "Backoff",
    "ChildSpec",
    "ConfigurationError",
    "Exit",
    "ExitKind",
    "FoxactorsError",
    "MailboxFull",
    "MailboxStatistics",
    "Restart",
    "RestartIntensity",
    "RestartIntensityExceeded",
    "Request",
    "StartChild",
    "StartError",
    "StopChild",
    "Strategy",
    "SupervisionError",
    "Supervisor",
    "SupervisorStatistics",
    "Terminated",
    "configure_logging",
    "freeze_gc",
    "open_system",
    "run",
    "start_child",
    "stop_child",
    "disable_tracing",
    "enable_tracing",
    "tracing_enabled",
}


def public_names(module: object) -> set[str]:
    # "@py_builtins", "@pytest_ar": pytest rewrites the asserts of a package that ships
    # a pytest plugin (ours, foxactors.testing's), and leaves these behind
    return {n for n in vars(module) if not n.startswith(("_", "@"))} - {
        "annotations",
        "testing",
        "backends",
        "pipeline",
        "jobs",  # a subpackage (with its extra), imported as foxactors.jobs
        "observe",  # likewise: foxactors.observe, with the metrics extra
    }


def test_the_export_list_is_pinned() -> None:
    assert public_names(foxactors) == PUBLIC


def test_every_public_name_has_a_docstring_and_a_public_module() -> None:
    for name in PUBLIC:
        obj = getattr(foxactors, name)
        assert (obj.__doc__ or "").strip(), name
        module = getattr(obj, "__module__", "foxactors")
        assert module.startswith("foxactors"), (name, module)


def test_errors_share_one_root() -> None:
    errors = [
        getattr(foxactors, n)
        for n in PUBLIC
        if n.endswith(("Error", "Exceeded", "Full", "Stopped", "Crashed", "Timeout", "NotFound"))
    ]
    assert len(errors) == 16
    assert all(issubclass(e, foxactors.FoxactorsError) for e in errors)


def test_testing_exports() -> None:
    # ``servers`` is a submodule (throwaway brokers), imported by the broker tests
    assert public_names(foxactors.testing) - {"servers"} == {
        "CancelJob",
        "CrashActor",
        "CrashBeforeSettle",
        "DrainCounts",
        "FaultSchedule",
        "HangHandler",
        "Harness",
        "JobSimulationResult",
        "LoseConnection",
        "RaiseInHandler",
        "Redeliver",
        "SimulatedFault",
        "SimulationFailed",
        "SimulationResult",
        "SlowHandler",
        "StopSystem",
        "TreeSimulationResult",
        "VirtualClock",
        "VirtualTimeEventLoop",
        "anyio_backend_options",
        "assert_enqueued",
        "enqueued",
        "fault_schedules",
        "in_virtual_time",
        "simulate",
        "simulate_jobs",
        "simulate_tree",
    }


JOBS_PUBLIC = {
    "BoundTask",
    "CancelKind",
    "CancelSignals",
    "Cancelled",
    "CronSchedule",
    "ErrorInfo",
    "Exponential",
    "JOB_ID_HEADER",
    "JobAlreadyExists",
    "JobArgumentsError",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobOutcome",
    "JobPage",
    "JobQueue",
    "JobRecord",
    "JobRecordError",
    "JobState",
    "JobStore",
    "JobStoreError",
    "Linear",
    "MemoryJobStore",
    "MissedTicks",
    "Periodic",
    "PeriodicEntry",
    "PeriodicLedger",
    "PeriodicScheduler",
    "PeriodicStatistics",
    "OutcomeReader",
    "QueueDepth",
    "Reaped",
    "Reject",
    "Retry",
    "StartKind",
    "Started",
    "SyncJobContext",
    "SyncJobHandle",
    "SyncJobQueue",
    "TENANT_HEADER",
    "Task",
    "TaskOptions",
    "TenantJobs",
    "UnknownTask",
}


def test_the_jobs_export_list_is_pinned_and_documented() -> None:
    from foxactors import jobs  # noqa: PLC0415 - the subpackage under test

    names = {n for n in vars(jobs) if not n.startswith(("_", "@"))} - {"annotations"}
    assert names >= JOBS_PUBLIC
    assert names - JOBS_PUBLIC <= {"RedisJobStore"}  # lands with the Redis store
    for name in JOBS_PUBLIC - {"JOB_ID_HEADER", "TENANT_HEADER"}:
        assert (getattr(jobs, name).__doc__ or "").strip(), name
