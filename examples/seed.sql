-- Demo data for reportjob: an orders table with a few hundred thousand rows, sparse and
-- clustered ids, NULLs, and text values that CSV encoders commonly get wrong.
-- Idempotent: re-running it rebuilds the table.
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS demo CASCADE;
CREATE SCHEMA demo;

CREATE TABLE demo.orders (
    id          bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    status      text NOT NULL,
    note        text,
    created_at  timestamptz NOT NULL
);

-- 300,000 orders. Ids come in dense bursts separated by wide gaps (sparse and clustered),
-- the way ids look after bulk imports and deletions.
INSERT INTO demo.orders (id, customer_id, amount, status, note, created_at)
SELECT (g / 1000)::bigint * 1000000 + (g % 1000) AS id,
       1 + (g::bigint * 7919) % 25000 AS customer_id,
       round(((g::bigint * 104729) % 100000) / 100.0 + 1, 2) AS amount,
       (ARRAY['new', 'paid', 'shipped', 'delivered', 'refunded'])[1 + g % 5] AS status,
       CASE WHEN g % 10 = 0 THEN NULL
            WHEN g % 10 = 1 THEN ''
            ELSE 'order ' || g
       END AS note,
       timestamptz '2024-01-01 00:00:00+00' + make_interval(secs => g * 97) AS created_at
  FROM generate_series(1, 300000) AS g;

-- A few nasty text values.
UPDATE demo.orders SET note = v.note
  FROM (VALUES
    (1001::bigint, 'comma, separated'),
    (1002, 'a "quoted" word'),
    (1003, E'two\nlines'),
    (1004, E'carriage\r\nreturn'),
    (1005, E'tab\tseparated'),
    (1006, E'back\\slash'),
    (1007, 'NULL'),
    (1008, E'\\N'),
    (1009, 'naïve café — 東京 🚀'),
    (1010, ' leading and trailing spaces '),
    (1011, E'\\.')
  ) AS v(id, note)
 WHERE orders.id = v.id;

ANALYZE demo.orders;
