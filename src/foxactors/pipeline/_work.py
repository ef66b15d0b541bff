"""Units of work passed between pipeline actors besides single deliveries."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from foxactors._message import Delivery, Outcome


@attrs.frozen
class Deliveries:
    """Deliveries travelling together between actors; each is still handled on its own.

    The consumer pulls deliveries in runs (GenStage-style demand), and a run crosses
    each hop as one message instead of one message per delivery.
    """

    items: tuple[Delivery, ...]


@attrs.frozen
class Batch:
    """Deliveries handed to a batch handler together."""

    deliveries: tuple[Delivery, ...]


@attrs.frozen
class BatchOutcomes:
    """The outcomes of one batch, one per delivery, reported to the pool at once."""

    outcomes: tuple[Outcome, ...]


def one_or_run(deliveries: Sequence[Delivery]) -> Delivery | Deliveries:
    """What to send for ``deliveries``: a single one as it is, several as a run."""
    return deliveries[0] if len(deliveries) == 1 else Deliveries(tuple(deliveries))


def one_or_batch(outcomes: Sequence[Outcome]) -> Outcome | BatchOutcomes:
    """What to send for ``outcomes``: a single one as it is, several together."""
    return outcomes[0] if len(outcomes) == 1 else BatchOutcomes(tuple(outcomes))
