-- Demo data: customers and orders in schema `shop`, an empty reporting schema.
DROP SCHEMA IF EXISTS shop CASCADE;
DROP SCHEMA IF EXISTS reporting CASCADE;
CREATE SCHEMA shop;
CREATE SCHEMA reporting;
CREATE TABLE shop.customers (customer_id int PRIMARY KEY, name text NOT NULL, country text);
CREATE TABLE shop.orders (
  order_id bigint PRIMARY KEY,
  customer_id int NOT NULL REFERENCES shop.customers,
  total numeric(10,2) NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO shop.customers VALUES (1, 'Ada', 'DE'), (2, 'Grace', 'US'), (3, 'Linus', 'FI');
INSERT INTO shop.orders (order_id, customer_id, total, updated_at)
SELECT i, 1 + i % 3, (i % 50) + 0.99, timestamptz '2024-01-01' + i * interval '1 hour'
FROM generate_series(1, 1000) i;
