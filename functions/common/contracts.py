"""The internal message contracts, written once and used by producers and consumers alike.

| message | producer -> consumer | transport |
|---|---|---|
| `ReserveRequest` / `PingRequest` | order API -> `InventoryReserve` function | Lambda Invoke (RequestResponse) |
| `ReservationAnswer` / `PingAnswer` | `InventoryReserve` -> order API | the Invoke response payload |
| `InventoryQueueMessage` | order API, order sweeper -> inventory queue consumer | SQS inventory queue |
| `CompletionMessage` | inventory queue consumer -> order completion consumer | SQS completion queue |

The reserve function is not on the public API: on AWS only the order API's role may invoke it
(IAM), locally it is reachable only through the Lambda API of the local cloud.

Every message carries the order's correlation id (docs/ARCHITECTURE.md, "Correlation id"):
`ReserveRequest.correlationId` on the Invoke, the `correlationId` SQS message attribute
(`correlation_attributes`) on both queues. It is optional: a message without one is still
processed (its consumer logs under the SQS message id / Lambda request id instead).

`ReservationAnswer.statusCode` keeps the HTTP meaning the reservation had when it was a route
(201 new reservation, 200 replay, 409 refused or conflicting replay, 422 invalid request,
5xx inventory fault), so logs and metrics read the same; the order side decides on `status`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from functions.common.observability import CORRELATION_ID_PATTERN

__all__ = [
    "CORRELATION_ID_ATTRIBUTE", "CompletionMessage", "InventoryCommand", "InventoryQueueMessage", "PingAnswer",
    "PingRequest", "ReservationAnswer", "ReservationFields", "ReserveRequest", "correlation_attributes",
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

# Answer statuses. RESERVED / REJECTED are business answers; everything else is a fault the
# order side treats like a server error (queue fallback, counts against the circuit).
RESERVED, REJECTED, CONFLICT, INVALID, ERROR = "RESERVED", "REJECTED", "CONFLICT", "INVALID", "ERROR"


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


class PingRequest(BaseModel):
    """Invoke payload: is the reserve function reachable, and can it reach its database?"""

    model_config = ConfigDict(extra="forbid", strict=True)

    action: Literal["ping"]


InventoryCommand = Annotated[ReserveRequest | PingRequest, Field(discriminator="action")]
_COMMAND = TypeAdapter(InventoryCommand)


def parse_inventory_command(payload: Any) -> ReserveRequest | PingRequest:
    """Validate an Invoke payload (raises pydantic.ValidationError naming the fields)."""
    return _COMMAND.validate_python(payload)


class ReservationAnswer(BaseModel):
    """The reserve function's answer (the Invoke response payload)."""

    model_config = ConfigDict(extra="ignore")

    statusCode: int
    status: Literal["RESERVED", "REJECTED", "CONFLICT", "INVALID", "ERROR"]
    orderId: str | None = None
    productId: str | None = None
    quantity: int | None = None
    reason: str | None = None
    message: str | None = None
    replay: bool = False

    @property
    def reserved(self) -> bool:
        return self.status == RESERVED

    @property
    def refused(self) -> bool:
        """A business refusal: insufficient stock, unknown product, or a conflicting replay."""
        return self.status in (REJECTED, CONFLICT)


class PingAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["UP", "DOWN"]
    reason: str | None = None


class InventoryQueueMessage(ReservationFields):
    """A queued order on the inventory queue (same fields as a reservation).

    Unknown fields are ignored so a newer producer does not send an older consumer's records to
    the DLQ; the known ones are strict."""

    model_config = ConfigDict(extra="ignore", strict=True)


class CompletionMessage(BaseModel):
    """The outcome of a queued order, for the order completion consumer."""

    model_config = ConfigDict(extra="ignore", strict=True)

    orderId: OrderId
    status: Literal["CONFIRMED", "REJECTED"]
    reason: str | None = None
