"""The internal message contracts, written once and used by producers and consumers alike.

| message | producer -> consumer | transport |
|---|---|---|
| `ReserveRequest` / `PingRequest` | order API -> `InventoryReserve` function | Lambda Invoke (RequestResponse) |
| `ReservationAnswer` / `PingAnswer` | `InventoryReserve` -> order API | the Invoke response payload |
| `InventoryQueueMessage` | order API, order sweeper -> inventory queue consumer | SQS inventory queue |
| `CompletionMessage` | inventory queue consumer -> order completion consumer | SQS completion queue |

The reserve function is not on the public API: on AWS only the order API's role may invoke it
(IAM), locally it is reachable only through the Lambda API of the local cloud.

**Inventory speaks only its own vocabulary.** Both paths report what inventory did with a
reservation, a `ReservationStatus` (RESERVED | REJECTED, the `reservations.status` column): the
sync answer in `ReservationAnswer.status`, the queue path in `CompletionMessage.status`. The order
side maps it to its own state once (functions/order/model.py, `OrderStatus.after_reservation`).
Inventory never names an order state, so the order state machine can change (a new state, a
renamed one) without a contract change, and both paths are read by the same mapping. Until every
producer runs this version, a completion in the former vocabulary (`status: CONFIRMED`, e.g.
queued or parked in the DLQ before the deploy) is still read as RESERVED.

**Deadline** (issue 17, item 2): `ReserveRequest.deadlineEpochMs` is the instant the order API
stops waiting (functions/common/deadline.py says why an instant and not a remaining budget). The
reserve function bounds its statements by it, refuses work it cannot finish in time and never
commits after it (`AnswerStatus.DEADLINE_EXCEEDED`, nothing written). The queue path has no
caller waiting and no deadline.

Every message carries the order's correlation id (docs/ARCHITECTURE.md, "Correlation id"):
`ReserveRequest.correlationId` on the Invoke, the `correlationId` SQS message attribute
(`correlation_attributes`) on both queues. It is optional: a message without one is still
processed (its consumer logs under the SQS message id / Lambda request id instead).

`ReservationAnswer.statusCode` keeps the HTTP meaning the reservation had when it was a route
(201 new reservation, 200 replay, 409 refused or conflicting replay, 422 invalid request,
5xx inventory fault, 504 deadline), so logs and metrics read the same; the order side decides on
`status`.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from functions.common.observability import CORRELATION_ID_PATTERN

__all__ = [
    "CORRELATION_ID_ATTRIBUTE",
    "AnswerStatus",
    "CompletionMessage",
    "InventoryCommand",
    "InventoryQueueMessage",
    "PingAnswer",
    "PingRequest",
    "ReservationAnswer",
    "ReservationFields",
    "ReservationStatus",
    "ReserveRequest",
    "correlation_attributes",
    "parse_inventory_command",
]

OrderId = Annotated[str, Field(min_length=1, max_length=64)]
ProductId = Annotated[str, Field(min_length=1, max_length=64)]
Quantity = Annotated[int, Field(ge=1, le=1000)]
CorrelationId = Annotated[str, Field(pattern=CORRELATION_ID_PATTERN.pattern)]

# The SQS message attribute that carries the correlation id (inventory and completion queues).
CORRELATION_ID_ATTRIBUTE = "correlationId"


def correlation_attributes(correlation_id: str | None) -> dict[str, dict[str, str]]:
    """SendMessage `MessageAttributes` carrying `correlation_id` (none when there is none)."""
    if not correlation_id:
        return {}
    return {CORRELATION_ID_ATTRIBUTE: {"DataType": "String", "StringValue": correlation_id}}


class ReservationStatus(enum.StrEnum):
    """What inventory did with an order id's reservation (recorded, so every replay gets it)."""

    RESERVED = "RESERVED"
    REJECTED = "REJECTED"


class AnswerStatus(enum.StrEnum):
    """The reserve function's answer. RESERVED / REJECTED / CONFLICT are business answers;
    everything else is a fault the order side treats like one (queue fallback, counts against
    the circuit)."""

    RESERVED = "RESERVED"
    REJECTED = "REJECTED"
    CONFLICT = "CONFLICT"  # the order id holds a reservation for another product or quantity
    INVALID = "INVALID"  # the request broke this contract
    ERROR = "ERROR"  # an injected fault, the database down
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"  # not started or rolled back: the caller's deadline


# Enum fields accept their values from JSON-decoded dicts (strict mode would want enum members).
ReservationStatusField = Annotated[ReservationStatus, Field(strict=False)]
AnswerStatusField = Annotated[AnswerStatus, Field(strict=False)]


class ReservationFields(BaseModel):
    """What a reservation is about: one order id, one product, one quantity."""

    model_config = ConfigDict(extra="forbid", strict=True)

    orderId: OrderId
    productId: ProductId
    quantity: Quantity


class ReserveRequest(ReservationFields):
    """Invoke payload: reserve `quantity` of `productId` for `orderId` (idempotent by orderId)."""

    action: Literal["reserve"]
    correlationId: CorrelationId | None = None  # the order request's, for the reserve function's logs
    # When the caller stops waiting (Unix epoch, ms); none: no deadline (a direct call, a test).
    deadlineEpochMs: Annotated[int, Field(ge=0)] | None = None


class PingRequest(BaseModel):
    """Invoke payload: is the reserve function reachable, and can it reach its database?"""

    model_config = ConfigDict(extra="forbid", strict=True)

    action: Literal["ping"]


InventoryCommand = Annotated[ReserveRequest | PingRequest, Field(discriminator="action")]
_COMMAND: TypeAdapter[ReserveRequest | PingRequest] = TypeAdapter(InventoryCommand)


def parse_inventory_command(payload: Any) -> ReserveRequest | PingRequest:
    """Validate an Invoke payload (raises pydantic.ValidationError naming the fields)."""
    return _COMMAND.validate_python(payload)


class ReservationAnswer(BaseModel):
    """The reserve function's answer (the Invoke response payload)."""

    model_config = ConfigDict(extra="ignore")

    statusCode: int
    status: AnswerStatusField
    orderId: str | None = None
    productId: str | None = None
    quantity: int | None = None
    reason: str | None = None
    message: str | None = None
    replay: bool = False

    @property
    def reserved(self) -> bool:
        return self.status == AnswerStatus.RESERVED

    @property
    def refused(self) -> bool:
        """A business refusal: insufficient stock, unknown product, or a conflicting replay."""
        return self.status in (AnswerStatus.REJECTED, AnswerStatus.CONFLICT)


class PingAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["UP", "DOWN"]
    reason: str | None = None


class InventoryQueueMessage(ReservationFields):
    """A queued order on the inventory queue (same fields as a reservation).

    Unknown fields are ignored so a newer producer does not send an older consumer's records to
    the DLQ; the known ones are strict."""

    model_config = ConfigDict(extra="ignore", strict=True)


# The completion vocabulary before inventory reported its own outcome (see the module doc).
_FORMER_COMPLETION_STATUS = {"CONFIRMED": ReservationStatus.RESERVED.value}


class CompletionMessage(BaseModel):
    """The outcome of a queued order's reservation, for the order completion consumer."""

    model_config = ConfigDict(extra="ignore", strict=True)

    orderId: OrderId
    status: ReservationStatusField
    reason: str | None = None  # why it was REJECTED

    @field_validator("status", mode="before")
    @classmethod
    def _former_vocabulary(cls, value: Any) -> Any:
        return _FORMER_COMPLETION_STATUS.get(value, value) if isinstance(value, str) else value
