-- Inventory service (inventory_db).
CREATE TABLE products (
    product_id text PRIMARY KEY,
    name       text NOT NULL,
    stock      integer NOT NULL CHECK (stock >= 0),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row per order id: the exactly-once guard. Inserted in the same transaction as the
-- conditional stock update, so stock moves at most once per order whichever path (sync HTTP,
-- queue, retry, duplicate delivery) gets here. Refusals for insufficient stock are recorded
-- too, so a replay returns the original outcome.
CREATE TABLE reservations (
    order_id   text PRIMARY KEY,
    product_id text NOT NULL,
    quantity   integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    status     text NOT NULL CHECK (status IN ('RESERVED', 'REJECTED')),
    reason     text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
