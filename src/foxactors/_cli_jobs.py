"""``foxactors jobs``: read and change job records from the command line.

status, list, cancel and stats read and change the job store only; retry also
publishes the job again, so it needs the broker of the job's queue, and stats of one
queue (``--queue``) shows the broker's counts of its messages beside the store's
when a broker is given. The store is a
Redis job store: the memory store lives inside one process, where no command can
reach it. Errors are one line on stderr (exit status 1), never with a URL's password.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

import structlog

from ._cli_cron import HELP as cron_help
from ._cli_cron import cron
from ._errors import ConfigurationError, FoxactorsError

if TYPE_CHECKING:
    from .backends import Backend
    from .jobs import JobQueue, JobRecord, JobStore

STORE_ENV = "FOXACTORS_JOBS_STORE_URL"
STORE_SCHEMES = ("redis://", "rediss://", "unix://")
BROKERS = ("rabbitmq", "redis")
STATES = "scheduled, pending, running, retrying, succeeded, dead, cancelled"
RESULT_WIDTH = 200  # characters of a result shown by `status` (--json shows all)

STORE_HELP = (
    "The job store is a Redis job store (redis://, rediss:// or unix:// URL), the one "
    "the workers write: --store URL, else $FOXACTORS_JOBS_STORE_URL, else the --redis "
    "URL (or $FOXACTORS_REDIS_URL). The memory store lives inside one process, so "
    "these commands cannot read it. 'retry' also publishes the job again: it needs the "
    "broker of the job's queue (--rabbitmq or --redis)."
)


def add_jobs_commands(commands: Any) -> None:
    """Add ``jobs status|list|cancel|retry|stats|cron`` to the ``foxactors`` command."""
    jobs = commands.add_parser(
        "jobs", help="read and change jobs in a job store", description=STORE_HELP
    )
    actions = jobs.add_subparsers(dest="action", required=True)
    for action, text in [
        ("status", "one job: state, attempts, progress, result, error, times"),
        ("cancel", "cancel a job: it never runs, or a running one is cancelled"),
        ("retry", "run a dead or cancelled job again from its first attempt"),
    ]:
        sub = actions.add_parser(action, help=text, description=STORE_HELP)
        sub.add_argument("id", help="the job id")
        sub.add_argument("--tenant", default=None, help="act as this tenant (default: any)")
        _connections(sub)
    listing = actions.add_parser(
        "list", help="jobs, newest first, a page at a time", description=STORE_HELP
    )
    _filters(listing)
    listing.add_argument("--state", default=None, help=f"only jobs in this state ({STATES})")
    listing.add_argument("--limit", type=int, default=50, help="jobs per page (default 50)")
    listing.add_argument("--cursor", default=None, help="where the page starts (printed last)")
    _connections(listing)
    stats = actions.add_parser(
        "stats",
        help="how many jobs are in each state (and, with --queue and a broker, messages)",
        description=f"{STORE_HELP} With --queue and a broker, the broker's counts of the "
        "queue's messages (ready, delayed, in flight, dead) are shown beside the jobs.",
    )
    _filters(stats)
    _connections(stats)
    _connections(actions.add_parser("cron", help=cron_help, description=STORE_HELP))


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", default=None, help="only jobs of this queue")
    parser.add_argument("--tenant", default=None, help="only jobs of this tenant")


def _connections(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    where = parser.add_argument_group("connections")
    where.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help=f"the Redis job store (default: ${STORE_ENV}, else the --redis URL)",
    )
    where.add_argument(
        "--prefix", default="fx:jobs", help="the store's key prefix (default: fx:jobs)"
    )
    brokers = where.add_mutually_exclusive_group()
    brokers.add_argument(
        "--rabbitmq",
        metavar="URL",
        default=None,
        help="RabbitMQ URL, the broker for retry (default: $FOXACTORS_RABBITMQ_URL, which "
        "keeps the password off the command line)",
    )
    brokers.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="Redis URL, the broker for retry and the store if no --store "
        "(default: $FOXACTORS_REDIS_URL)",
    )


def run_jobs(args: argparse.Namespace) -> int:
    """Run a ``jobs`` command; return its exit status (1 on any error)."""
    choices = [(b, getattr(args, b)) for b in BROKERS]  # flags first, then the environment
    choices += [(b, os.environ.get(f"FOXACTORS_{b.upper()}_URL")) for b in BROKERS]
    broker = next(((b, u) for b, u in choices if u), None)
    store_url = (
        args.store
        or os.environ.get(STORE_ENV)
        or args.redis
        or os.environ.get("FOXACTORS_REDIS_URL")
    )
    urls = [u for _, u in choices if u] + [u for u in (args.store, os.environ.get(STORE_ENV)) if u]
    try:
        if not store_url:
            raise ConfigurationError(
                f"jobs {args.action} needs the job store: --store URL (a Redis job store) "
                f"or ${STORE_ENV}"
            )
        with _quiet():
            return asyncio.run(_act(args, store_url, broker))
    except (FoxactorsError, ImportError) as exc:
        print(f"foxactors: {scrub(' '.join(str(exc).splitlines()), urls)}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the libraries' log events (foxactors', aio-pika's) while a command runs.

    Its output and its one error line say what happened; a connect failure would
    otherwise be logged too, on stdout (mixed into ``--json``) or stderr.
    """
    config = structlog.get_config()
    disabled = logging.root.manager.disable
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
        logger_factory=structlog.ReturnLoggerFactory(),  # prints nothing
    )
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(disabled)
        structlog.configure(**config)


def open_store(url: str, prefix: str) -> JobStore:
    """The job store at ``url``: a `RedisJobStore` (the one processes share).

    Raises:
        ConfigurationError: Not a Redis URL.
        ImportError: The ``jobs`` or ``redis`` extra is missing (the message says which).
    """
    if not url.startswith(STORE_SCHEMES):
        raise ConfigurationError(
            f"the job store URL must be a Redis one (redis://, rediss:// or unix://), got "
            f"{redact(url)!r}; the memory store lives inside one process, out of reach"
        )
    from .jobs import RedisJobStore  # noqa: PLC0415 - the jobs extra, loaded when asked

    return RedisJobStore(url, prefix=prefix)


def open_backend(broker: str, url: str) -> Backend:
    """The backend of ``broker`` ("rabbitmq" or "redis") on ``url``."""
    from . import backends  # noqa: PLC0415 - only retry needs one

    if broker == "rabbitmq":
        return backends.RabbitMQBackend(url)
    return backends.RedisBackend(url)


async def _act(args: argparse.Namespace, store_url: str, broker: tuple[str, str] | None) -> int:
    from .backends import MemoryBackend  # noqa: PLC0415 - the CLI's core stays light
    from .jobs import JobQueue  # noqa: PLC0415 - needs the jobs extra

    store = open_store(store_url, args.prefix)
    backend: Backend | None = None
    try:
        if args.action == "retry":
            if broker is None:
                raise ConfigurationError(
                    "jobs retry publishes the job again: give the broker of its queue with "
                    "--rabbitmq URL or --redis URL"
                )
            backend = open_backend(*broker)
        elif args.action == "stats" and args.queue and broker is not None:
            backend = open_backend(*broker)  # the broker's view of the queue, beside
        args.broker_view = backend is not None
        # Reads, cancels and counts touch only the store: the memory backend stands in.
        jobs = JobQueue(backend or MemoryBackend(), store=store)
        return await COMMANDS[args.action](jobs, args)
    finally:
        try:
            if backend is not None:
                await backend.close()
        finally:
            await store.close()


# -- the commands ---------------------------------------------------------------------


async def _status(jobs: JobQueue, args: argparse.Namespace) -> int:
    record = await jobs.get(args.id, tenant=args.tenant)
    if args.json:
        _print_json(_plain(record))
        return 0
    attempts = f"{record.attempt}/{record.max_attempts}"
    lines: list[tuple[str, object]] = [
        ("id", record.id),
        ("task", record.task),
        ("queue", record.queue),
        ("state", record.state.value + (" (cancel requested)" if _cancelling(record) else "")),
        ("attempts", attempts),
        ("progress", _progress(record)),
        ("tenant", record.tenant),
        ("priority", record.priority),
        ("key", record.key),
        ("enqueued", _when(record.enqueued_at)),
        ("scheduled", _when(record.scheduled_at)),
        ("started", _when(record.started_at)),
        ("leased until", _when(record.lease_until) if record.state.value == "running" else None),
        ("next run", _when(record.next_run_at)),
        ("finished", _when(record.finished_at)),
        ("result", _result(record)),
        ("error", record.error and f"{record.error.type}: {record.error.message}"),
        ("reason", record.reason),
    ]
    for label, value in lines:
        if value is not None:
            print(f"{label:<13}{value}")
    return 0


async def _list(jobs: JobQueue, args: argparse.Namespace) -> int:
    page = await jobs.list(
        queue=args.queue, state=args.state, tenant=args.tenant, limit=args.limit, cursor=args.cursor
    )
    if args.json:
        _print_json({"jobs": [_plain(r) for r in page.jobs], "cursor": page.cursor})
        return 0
    rows = [
        [
            r.id,
            r.task,
            r.queue,
            r.state.value,
            f"{r.attempt}/{r.max_attempts}",
            r.tenant or "-",
            _when(r.enqueued_at) or "-",
        ]
        for r in page.jobs
    ]
    _print_table(["ID", "TASK", "QUEUE", "STATE", "ATTEMPTS", "TENANT", "ENQUEUED"], rows)
    more = f"; next page: --cursor {page.cursor}" if page.cursor else ""
    print(f"{len(rows)} job(s){more}", file=sys.stderr)
    return 0


async def _cancel(jobs: JobQueue, args: argparse.Namespace) -> int:
    from .jobs import CancelKind  # noqa: PLC0415

    done = await jobs.cancel(args.id, tenant=args.tenant)
    if args.json:
        _print_json({"id": args.id, "outcome": done.kind.value, "state": done.record.state.value})
    elif done.kind is CancelKind.CANCELLED:
        print(f"job {args.id} cancelled: it will not run")
    elif done.kind is CancelKind.REQUESTED:
        print(f"job {args.id} is running: cancel requested; it ends cancelled when it stops")
    else:
        print(f"job {args.id} had finished ({done.record.state.value}): nothing changed")
    return 0


async def _retry(jobs: JobQueue, args: argparse.Namespace) -> int:
    handle = await jobs.retry(args.id, tenant=args.tenant)
    record = await jobs.get(handle.id, tenant=args.tenant)
    if args.json:
        _print_json({"id": record.id, "state": record.state.value, "queue": record.queue})
    else:
        print(
            f"job {record.id} is {record.state.value} again on {record.queue!r}: "
            f"{record.max_attempts} attempt(s) from the first"
        )
    return 0


async def _stats(jobs: JobQueue, args: argparse.Namespace) -> int:
    if args.broker_view:
        return await _depth(jobs, args)
    counts = {
        state.value: n
        for state, n in (await jobs.counts(queue=args.queue, tenant=args.tenant)).items()
    }
    if args.json:
        _print_json(counts)
        return 0
    rows = [[state, str(n)] for state, n in counts.items()]
    _print_table(["STATE", "JOBS"], [*rows, ["total", str(sum(counts.values()))]])
    return 0


async def _depth(jobs: JobQueue, args: argparse.Namespace) -> int:
    """``stats --queue Q`` with a broker: the store's jobs and the broker's messages.

    States the broker tells only the process holding them (RabbitMQ's delayed and in
    flight: this command holds none) show as ``-`` (null in JSON).
    """
    depth = await jobs.depth(args.queue, tenant=args.tenant)
    assert depth.broker is not None  # asked for
    unseen = type(depth.broker).seen_here
    data = depth.to_dict()
    broker = {k: (None if k in unseen else v) for k, v in data["broker"].items()}
    if args.json:
        _print_json({**data, "broker": broker})
        return 0
    jobs_rows = [[state, str(n)] for state, n in data["jobs"].items()]
    jobs_rows.append(["total", str(sum(data["jobs"].values()))])
    broker_rows = [[state, "-" if n is None else str(n)] for state, n in broker.items()]
    rows = [
        [*left, *right]
        for left, right in itertools.zip_longest(jobs_rows, broker_rows, fillvalue=["", ""])
    ]
    _print_table(["STATE", "JOBS", "BROKER", "MESSAGES"], rows)
    if unseen:
        print(
            f"{', '.join(sorted(unseen))}: {jobs.backend.name} tells only the process that "
            "holds them; the job counts cover them (scheduled, retrying, running)",
            file=sys.stderr,
        )
    return 0


COMMANDS: Mapping[str, Callable[[JobQueue, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "status": _status,
    "list": _list,
    "cancel": _cancel,
    "retry": _retry,
    "stats": _stats,
    "cron": cron,
}


# -- output -------------------------------------------------------------------------------


def _plain(record: JobRecord) -> dict[str, Any]:
    data = record.to_dict()
    data.pop("v", None)  # the stored format's version, not the job's
    return data


def _print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False))


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def _when(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _progress(record: JobRecord) -> str | None:
    if record.progress is None:
        return None
    shown = f"{record.progress:g}%"
    return f"{shown} {record.progress_message}" if record.progress_message else shown


def _cancelling(record: JobRecord) -> bool:
    return record.cancel_requested and not record.state.final


def _result(record: JobRecord) -> str | None:
    if record.state.value != "succeeded":
        return None
    text = json.dumps(record.result, ensure_ascii=False)
    if len(text) > RESULT_WIDTH:
        return f"{text[:RESULT_WIDTH]}... ({len(text)} characters; --json shows all)"
    return text


# -- credentials ---------------------------------------------------------------------------


def redact(url: str) -> str:
    """``url`` with its password (in the authority or the query) as ``***``."""
    return scrub(url, [url])


def scrub(text: str, urls: Sequence[str]) -> str:
    """``text`` without the passwords of ``urls``, however a client quoted them."""
    for url in urls:
        try:
            parts = urlsplit(url)
            secrets = [parts.password, *(v for k, v in parse_qsl(parts.query) if k == "password")]
        except ValueError:
            text = text.replace(url, "<URL>")
            continue
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            shown = urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
            text = text.replace(url, shown)
        for secret in secrets:
            if secret:
                for form in {secret, unquote(secret), quote(unquote(secret), safe="")}:
                    text = text.replace(form, "***")
    return text
