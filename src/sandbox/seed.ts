import type { Client } from 'pg';

/**
 * A sample application schema with the types a restore must get right: json, bytea, timestamptz,
 * numeric, text with quotes and newlines, NULLs, a sequence, a second schema and a foreign key.
 * `orders` holds `rows` rows (100k by default); `padBytes` grows each order for size benchmarks.
 */
export async function seedSampleDatabase(client: Client, opts: { rows?: number; padBytes?: number; randomPadding?: boolean } = {}): Promise<void> {
  const rows = opts.rows ?? 100_000;
  const pad = opts.padBytes ?? 0;
  // Random padding barely compresses, so a dump of it is as large as a real database's would be.
  const padding = opts.randomPadding
    ? `(SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, ceil($2::int / 32.0)::int) i)`
    : `repeat(md5(g::text), ceil($2::int / 32.0)::int)`;
  await client.query(`
    CREATE SCHEMA IF NOT EXISTS billing;
    CREATE TABLE IF NOT EXISTS customers (
      id integer PRIMARY KEY,
      name text NOT NULL,
      profile jsonb,
      created_at timestamptz NOT NULL
    );
    CREATE TABLE IF NOT EXISTS orders (
      id bigserial PRIMARY KEY,
      customer_id integer NOT NULL REFERENCES customers(id),
      amount numeric(12,2) NOT NULL,
      placed_at timestamptz NOT NULL,
      note text,
      padding text
    );
    CREATE TABLE IF NOT EXISTS attachments (
      id integer PRIMARY KEY,
      order_id bigint,
      content bytea NOT NULL,
      meta json
    );
    CREATE TABLE IF NOT EXISTS billing.invoices (
      id integer PRIMARY KEY,
      total double precision,
      issued_on date,
      period interval
    );
  `);
  await client.query(`
    INSERT INTO customers
    SELECT g, 'customer ' || g || CASE WHEN g % 7 = 0 THEN E' with "quotes", \\\\backslash and\\nnewline' ELSE '' END,
           jsonb_build_object('tier', g % 3, 'tags', jsonb_build_array('a', g::text), 'nested', jsonb_build_object('x', g * 1.5)),
           timestamptz '2026-01-01 00:00:00+00' + g * interval '37 minutes'
      FROM generate_series(1, 1000) g
    ON CONFLICT DO NOTHING`);
  await client.query(
    `INSERT INTO orders (customer_id, amount, placed_at, note, padding)
     SELECT 1 + (g % 1000), round((g % 10000) / 7.0, 2), timestamptz '2026-02-01 12:00:00+02' + g * interval '1 second',
            CASE WHEN g % 5 = 0 THEN NULL ELSE 'order ' || g END,
            CASE WHEN $2::int > 0 THEN ${padding} ELSE NULL END
       FROM generate_series(1, $1::int) g`,
    [rows, pad],
  );
  await client.query(`
    INSERT INTO attachments
    SELECT g, g * 10, decode(repeat(md5(g::text), 4), 'hex') || '\\x00ff'::bytea, json_build_object('name', 'file-' || g || '.bin')
      FROM generate_series(1, 500) g
    ON CONFLICT DO NOTHING`);
  await client.query(`
    INSERT INTO billing.invoices
    SELECT g, g / 3.0, date '2026-01-01' + g, (g % 30) * interval '1 day 2 hours'
      FROM generate_series(1, 2000) g
    ON CONFLICT DO NOTHING`);
  await client.query('ANALYZE');
}
