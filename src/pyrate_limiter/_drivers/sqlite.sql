-- The SQLite bucket's statements, loaded by name (pyrate_limiter/_drivers/sqlite.py).
--
-- One table per bucket, one row per admitted item. Filled in by str.format, once per bucket so
-- that the driver's statement cache always hits: {table} is the table's quoted name; {limit} a
-- rate's limit and {synchronous} a checked PRAGMA value, never user text. Everything else is a
-- parameter.
--
-- cum (the running total of weight) is the row id: a window's start and the newest row are
-- B-tree seeks on the table itself, and max(cum) and min(cum) one seek each. Rows are in ts
-- order as in cum order, so a time is found by walking the row ids from one end, never past
-- the rows the statement removes or moves anyway. Trimming keeps the newest trimmed row with
-- weight 0: its cum is the weight ever trimmed, its ts how far back windows are still known.
--
-- A bucket's pause lives apart, in one row of pyrate_limiter_pauses keyed by {bucket} (the
-- table's name as a string literal): no trim or leak of the table can reach it.

-- name: begin
BEGIN IMMEDIATE

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: now
-- SQLite's clock in epoch ms.
SELECT CAST(round((julianday('now') - 2440587.5) * 86400000) AS INTEGER)

-- name: wal
-- WAL: readers never block the writer, and a commit appends instead of rewriting.
PRAGMA journal_mode=WAL

-- name: synchronous
PRAGMA synchronous={synchronous}

-- name: busy_timeout
-- How long the connection waits for another's lock, in ms.
PRAGMA busy_timeout

-- name: set_busy_timeout
-- {ms}: an int the driver computed, never user text.
PRAGMA busy_timeout={ms}

-- name: database_list
-- The file of each database of the connection: main's is the one a bucket watches.
PRAGMA database_list

-- name: create_table
CREATE TABLE IF NOT EXISTS {table}
(cum INTEGER PRIMARY KEY, ts INTEGER NOT NULL, weight INTEGER NOT NULL, name TEXT NOT NULL)

-- name: create_pauses
-- Created beside any bucket table, also one of a version that had no pauses.
CREATE TABLE IF NOT EXISTS pyrate_limiter_pauses (bucket TEXT PRIMARY KEY, until INTEGER NOT NULL) WITHOUT ROWID

-- name: probe
SELECT cum, ts, weight, name FROM {table} LIMIT 0

-- name: state
-- One row, even of an empty table: total, newest ts, base (the weight ever trimmed), the
-- trimmed row's ts (the oldest row, if of weight 0), the oldest live row's ts, the end of the
-- pause (0: none), then {firsts}: one first_reaching per rate. ?1 is the item's weight. For
-- Limiter.state, {counted} adds one counted_since per rate.
SELECT coalesce(n.cum, 0), n.ts, coalesce(o.cum - o.weight, 0), CASE WHEN o.weight = 0 THEN o.ts END,
(SELECT ts FROM {table} WHERE cum > o.cum - o.weight ORDER BY cum LIMIT 1), p.until, {firsts}{counted}
FROM (SELECT coalesce((SELECT until FROM pyrate_limiter_pauses WHERE bucket = {bucket}), 0) AS until) AS p
LEFT JOIN {table} AS n ON n.cum = (SELECT max(cum) FROM {table})
LEFT JOIN {table} AS o ON o.cum = (SELECT min(cum) FROM {table})

-- name: first_reaching
-- The ts of the first row whose running total reaches total + weight - limit.
(SELECT ts FROM {table} WHERE cum >= n.cum + ?1 - {limit} ORDER BY cum LIMIT 1)

-- name: counted_since
-- For a rate whose window at t holds the rows after {since} (t - its span, a parameter): the
-- running total of the newest row before them, and the stamp of the oldest of them.
(SELECT cum FROM {table} WHERE ts <= {since} ORDER BY cum DESC LIMIT 1),
(SELECT ts FROM {table} WHERE ts > {since} AND weight > 0 ORDER BY cum LIMIT 1)

-- name: befores
-- For a refusal, what each rate has left: per rate, {befores}.
SELECT {befores}

-- name: before_at
-- The running total of the newest row stamped at or before {since} (t - the rate's span, a
-- parameter): what was recorded before the rate's window at t.
(SELECT cum FROM {table} WHERE ts <= {since} ORDER BY cum DESC LIMIT 1)

-- name: trim
-- Delete the rows at or before ?1 but the newest of them (9223372036854775807: no row is newer).
DELETE FROM {table} WHERE cum < (SELECT cum FROM {table} WHERE cum <
coalesce((SELECT cum FROM {table} WHERE ts > ?1 ORDER BY cum LIMIT 1), 9223372036854775807)
ORDER BY cum DESC LIMIT 1)

-- name: mark
-- ... and keep that one with weight 0, as the trimmed row.
UPDATE {table} SET weight = 0 WHERE cum = (SELECT min(cum) FROM {table}) AND ts <= ?1 AND weight != 0

-- name: trimmed
-- The weight that trim and mark at ?1 take away.
SELECT coalesce(sum(weight), 0) FROM {table} WHERE cum <
coalesce((SELECT cum FROM {table} WHERE ts > ?1 ORDER BY cum LIMIT 1), 9223372036854775807)

-- name: insert
INSERT INTO {table} (cum, ts, weight, name) VALUES (?, ?, ?, ?)

-- name: before
SELECT cum FROM {table} WHERE ts <= ? ORDER BY cum DESC LIMIT 1

-- name: shift
-- Row ids must stay unique at every step of an UPDATE: shift through negative values ...
UPDATE {table} SET cum = -(cum + ?) WHERE cum > ?

-- name: unshift
-- ... and back.
UPDATE {table} SET cum = -cum WHERE cum < 0

-- name: find
-- The newest row stamped ?1 with weight ?2 and name ?3.
SELECT cum FROM {table} WHERE ts = ?1 AND weight = ?2 AND name = ?3 AND cum > coalesce(
(SELECT cum FROM {table} WHERE ts < ?1 ORDER BY cum DESC LIMIT 1), -1) ORDER BY cum DESC LIMIT 1

-- name: delete
DELETE FROM {table} WHERE cum = ?

-- name: flush
DELETE FROM {table}

-- name: pause
-- One statement, of any SQLite version (no upsert): a later end already set stays.
INSERT OR REPLACE INTO pyrate_limiter_pauses (bucket, until) VALUES ({bucket},
max(?1, coalesce((SELECT until FROM pyrate_limiter_pauses WHERE bucket = {bucket}), 0)))

-- name: paused
SELECT coalesce((SELECT until FROM pyrate_limiter_pauses WHERE bucket = {bucket}), 0)

-- name: unpause
DELETE FROM pyrate_limiter_pauses WHERE bucket = {bucket}

-- name: count
SELECT coalesce((SELECT max(cum) FROM {table})
- (SELECT cum - weight FROM {table} WHERE cum = (SELECT min(cum) FROM {table})), 0)

-- name: peek
-- The unit ?1 places from the newest lies in the first row whose running total reaches it,
-- unless that row starts at or after it: then the unit is gone.
WITH u(unit) AS (SELECT (SELECT max(cum) FROM {table}) - ?1) SELECT name, ts FROM
(SELECT name, ts, cum - weight AS start FROM {table} WHERE cum >= (SELECT unit FROM u) ORDER BY cum LIMIT 1), u
WHERE start < unit
