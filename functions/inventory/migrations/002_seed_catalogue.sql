-- Seed catalogue (docs/ARCHITECTURE.md). A migration, so it runs on the first deploy only.
INSERT INTO products (product_id, name, stock) VALUES
    ('widget', 'Widget', 100),
    ('gadget', 'Gadget', 50),
    ('gizmo', 'Gizmo', 25),
    ('doohickey', 'Doohickey', 10)
ON CONFLICT (product_id) DO NOTHING;
