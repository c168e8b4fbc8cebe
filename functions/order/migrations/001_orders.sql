-- Orders of the order service (order_db). Every state change goes through
-- functions/order/service.py:transition_order with a conditional UPDATE.
CREATE TABLE orders (
    order_id        text PRIMARY KEY,
    product_id      text NOT NULL,
    quantity        integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    status          text NOT NULL CHECK (status IN ('PENDING', 'QUEUED', 'CONFIRMED', 'REJECTED')),
    reason          text,
    idempotency_key text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX orders_created_at_idx ON orders (created_at DESC, order_id DESC);
