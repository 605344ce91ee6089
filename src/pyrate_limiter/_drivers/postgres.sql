-- The PostgreSQL bucket's statements and functions, loaded by name (pyrate_limiter/_drivers/postgres_table.py).
--
-- Filled in once per table by psycopg.sql, never by str.format: {table} is the table's quoted
-- identifier; {function}, {trim}, {pause}, {ts_index} and {cum_index} the names derived from it
-- (derived_name), quoted too. A *_head statement creates a function whose body is the *_body
-- statement, passed as {body}, a quoted literal: braces in a body are doubled. decide_call's
-- {function} is the bare derived name, put in by str.format. Everything else is a parameter:
-- %s or %(name)s (psycopg), $1... in decide_call (sent through libpq, as text).
--
-- ts is NULL only in a bucket's marker, made with its first item (no name either): weight =
-- the newest trimmed timestamp (NULL before a trim), cum = the weight ever trimmed (the base of
-- every running total), oldest = the oldest item's timestamp, or earlier (NULL: no item); the
-- column is NULL in items, and so is paused: the end of the bucket's pause (NULL: none set).
-- The marker is never trimmed (its ts is NULL), so a pause lasts until flush.

-- name: lock
SELECT pg_advisory_xact_lock(%s::bigint)

-- name: now
SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint

-- name: create_table
CREATE TABLE IF NOT EXISTS {table} (bucket text NOT NULL, name text, ts bigint, weight bigint,
cum bigint NOT NULL, oldest bigint, paused bigint)

-- name: add_paused
-- A table made before pauses existed; adding a nullable column rewrites nothing.
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS paused bigint

-- name: ts_index
-- Items are in the same order by ts as by cum; items of weight 0 share their predecessor's cum.
-- (bucket, ts, cum) finds both ends, trims and inserts out of order, and holds the marker last
-- (NULLS LAST), next to the newest item; (bucket, cum, weight DESC) finds where a window
-- starts: among equal totals, the row of weight comes first.
CREATE INDEX IF NOT EXISTS {ts_index} ON {table} (bucket, ts, cum)

-- name: cum_index
CREATE INDEX IF NOT EXISTS {cum_index} ON {table} (bucket, cum, weight DESC)

-- name: trim_head
CREATE OR REPLACE FUNCTION {trim}(p_bucket text, p_horizon bigint, OUT trimmed bigint, OUT base bigint,
    OUT earliest bigint)
LANGUAGE plpgsql AS {body}

-- name: trim_body
-- The caller holds the bucket's lock. Deletes the items at or before the horizon, records the
-- newest of them and the oldest left in the marker; returns the weight deleted, the base and the
-- oldest item after.
DECLARE
    v_ts bigint;
    v_cum bigint;
BEGIN
    WITH gone AS (
        DELETE FROM {table} WHERE bucket = p_bucket AND ts <= p_horizon RETURNING ts, cum, weight
    ) SELECT max(ts), max(cum), coalesce(sum(weight), 0) INTO v_ts, v_cum, trimmed FROM gone;
    SELECT ts INTO earliest FROM {table} WHERE bucket = p_bucket AND ts IS NOT NULL ORDER BY ts LIMIT 1;
    -- Written only when it changes: leaking an idle bucket writes nothing.
    UPDATE {table} SET weight = coalesce(v_ts, weight), cum = coalesce(v_cum, cum), oldest = earliest
        WHERE bucket = p_bucket AND ts IS NULL AND (v_ts IS NOT NULL OR oldest IS DISTINCT FROM earliest)
        RETURNING cum INTO base;
    IF NOT FOUND THEN
        SELECT cum INTO base FROM {table} WHERE bucket = p_bucket AND ts IS NULL;
    END IF;
    -- No marker: the bucket never had an item.
    base := coalesce(base, 0);
END

-- name: decide_head
-- p_items: stamp, weight, max delay of each; p_intervals: spans, interval + 1 each.
CREATE OR REPLACE FUNCTION {function}(
    p_lock bigint, p_bucket text, p_names text[], p_items bigint[],
    p_limits bigint[], p_intervals bigint[], p_record boolean,
    p_lock_timeout bigint, p_durable boolean)
RETURNS bigint[] LANGUAGE plpgsql AS {body}

-- name: decide_body
-- The rule of pyrate_limiter._window, step for step, for each item in turn, as if each had waited
-- for the lock in that order. Each statement of a PL/pgSQL function takes a fresh snapshot, so
-- everything after the lock sees what the previous holder committed, and each item what the ones
-- before it recorded. Returns [delay, index of the refusing rate or NULL, time decided at] per
-- item, a refusal's followed by what each rate has left, in one flat array: not rows of OUT
-- parameters, which the server would pass through a tuplestore. The bucket's state (marker and
-- newest item) is read once, and again after a trim; each item recorded updates it in place.
-- The body is sent as one line: every comment here stands on a line of its own.
DECLARE
    v_out bigint[] := '{{}}';
    v_setting text;
    delay bigint;
    rate bigint;
    decided bigint;
    v_longest bigint := p_intervals[cardinality(p_intervals)];
    v_t bigint;
    v_weight bigint;
    v_max_delay bigint;
    v_now bigint;
    v_stale boolean := true;
    v_marked boolean;
    v_mark bigint;
    v_base bigint;
    v_oldest bigint;
    v_total bigint;
    v_last bigint;
    v_at bigint;
    v_need bigint;
    v_fits bigint;
    v_prev bigint;
    v_paused bigint;
    v_never boolean;
    v_left bigint[];
BEGIN
    -- Assignments and conditions, not PERFORM: a lone function call there runs without starting
    -- the executor. This transaction only: a held lock (the bucket's or its table's) is waited for
    -- at most p_lock_timeout ms, and a commit may return before its WAL is flushed when asked.
    v_setting := set_config('lock_timeout', p_lock_timeout || 'ms', true);
    IF NOT p_durable THEN
        v_setting := set_config('synchronous_commit', 'off', true);
    END IF;
    IF NOT pg_try_advisory_xact_lock(p_lock) THEN
        PERFORM pg_advisory_xact_lock(p_lock);
    END IF;
    <<items>>
    FOR j IN 1 .. cardinality(p_names) LOOP
        v_t := p_items[3 * j - 2];
        v_weight := p_items[3 * j - 1];
        rate := NULL;
        -- Once, or again after a trim.
        LOOP
            IF v_stale THEN
                -- One backward index scan reads all the state: the marker (it sorts last) and
                -- the newest item (the total).
                SELECT count(*) FILTER (WHERE ts IS NULL) > 0, max(weight) FILTER (WHERE ts IS NULL),
                        coalesce(max(cum) FILTER (WHERE ts IS NULL), 0), max(oldest),
                        max(cum) FILTER (WHERE ts IS NOT NULL), max(ts), max(paused)
                    INTO v_marked, v_mark, v_base, v_oldest, v_total, v_last, v_paused
                    FROM (SELECT ts, weight, cum, oldest, paused FROM {table} WHERE bucket = p_bucket
                        ORDER BY ts DESC, cum DESC LIMIT 2) f;
                v_stale := false;
            END IF;
            -- Nothing is judged before the marker plus the longest interval: the windows of an
            -- earlier item would reach back over trimmed rows.
            v_now := greatest(v_t, v_mark + v_longest);
            -- After a trim, the oldest item left is newer than the horizon (or there is none).
            EXIT WHEN NOT coalesce(p_record AND v_oldest <= v_now - v_longest, false);
            PERFORM {trim}(p_bucket, v_now - v_longest);
            -- Base, oldest, newest trimmed stamp and total changed.
            v_stale := true;
        END LOOP;
        v_total := coalesce(v_total, v_base);
        v_at := v_now;
        decided := v_now;
        -- Paused: the search starts at the pause's end (the item keeps its stamp, and the delay
        -- counts from it); the first rate refuses when no rate pushes it further.
        IF v_paused > v_now THEN
            v_at := v_paused;
            rate := 0;
        END IF;
        v_never := false;
        FOR i IN 1 .. cardinality(p_limits) LOOP
            v_need := v_total + v_weight - p_limits[i];
            CONTINUE WHEN v_need <= v_base;
            IF v_weight > p_limits[i] THEN
                delay := -1;
                rate := i - 1;
                v_never := true;
                EXIT;
            END IF;
            SELECT ts + p_intervals[i] INTO v_fits FROM {table}
                WHERE bucket = p_bucket AND cum >= v_need ORDER BY cum, weight DESC LIMIT 1;
            IF v_fits > v_at THEN
                v_at := v_fits;
                rate := i - 1;
            END IF;
        END LOOP;
        IF v_never THEN
            -- Heavier than a limit: refused, whatever the wait allowed.
            NULL;
        ELSIF rate IS NULL THEN
            -- Admitted at once (at v_now, later than its stamp when late: the caller is told).
            delay := 0;
        ELSE
            -- A decision's delay counts from the time it was decided at; waiting's from the stamp.
            delay := v_at - CASE WHEN p_record THEN v_now ELSE v_t END;
            v_max_delay := p_items[3 * j];
            IF p_record AND v_max_delay IS NOT NULL AND delay <= v_max_delay THEN
                -- A reservation: recorded below, at v_at.
                rate := NULL;
            END IF;
        END IF;
        IF rate IS NOT NULL THEN
            -- Refused: then what each rate has left at the time decided at, from this same snapshot.
            v_left := '{{}}';
            FOR i IN 1 .. cardinality(p_limits) LOOP
                SELECT cum INTO v_prev FROM {table} WHERE bucket = p_bucket AND ts <= v_now - p_intervals[i]
                    ORDER BY ts DESC, cum DESC LIMIT 1;
                IF NOT FOUND THEN
                    v_prev := v_base;
                END IF;
                v_left := v_left || greatest(p_limits[i] - (v_total - v_prev), 0);
            END LOOP;
            v_out := v_out || ARRAY[delay, rate, decided] || v_left;
            CONTINUE items;
        END IF;
        IF NOT p_record THEN
            v_out := v_out || ARRAY[delay, rate, decided];
            CONTINUE items;
        END IF;
        IF v_last IS NULL OR v_at >= v_last THEN
            INSERT INTO {table} (bucket, name, ts, weight, cum)
                VALUES (p_bucket, p_names[j], v_at, v_weight, v_total + v_weight);
            v_last := v_at;
        ELSE
            -- Older than the newest row (clock skew, or behind a reservation): insert in order.
            SELECT cum INTO v_prev FROM {table} WHERE bucket = p_bucket AND ts <= v_at
                ORDER BY ts DESC, cum DESC LIMIT 1;
            IF NOT FOUND THEN
                v_prev := v_base;
            END IF;
            IF v_weight <> 0 THEN
                UPDATE {table} SET cum = cum + v_weight WHERE bucket = p_bucket AND ts > v_at;
            END IF;
            INSERT INTO {table} (bucket, name, ts, weight, cum)
                VALUES (p_bucket, p_names[j], v_at, v_weight, v_prev + v_weight);
        END IF;
        -- The newest row's total, whichever row was inserted.
        v_total := v_total + v_weight;
        -- The marker knows the oldest item, so that no decision looks for it (a release may leave it
        -- earlier than the oldest: the next trim is then due early, finds nothing, and corrects it).
        IF v_oldest IS NULL OR v_at < v_oldest THEN
            IF v_marked THEN
                UPDATE {table} SET oldest = v_at WHERE bucket = p_bucket AND ts IS NULL;
            ELSE
                INSERT INTO {table} (bucket, cum, oldest) VALUES (p_bucket, 0, v_at);
                v_marked := true;
            END IF;
            v_oldest := v_at;
        END IF;
        v_out := v_out || ARRAY[delay, rate, decided];
    END LOOP;
    RETURN v_out;
END

-- name: pause_head
CREATE OR REPLACE FUNCTION {pause}(p_lock bigint, p_bucket text, p_until bigint, p_lock_timeout bigint)
RETURNS bigint LANGUAGE plpgsql AS {body}

-- name: pause_body
-- Under the bucket's lock, as a decision, so that a decision sees a pause whole or not at all and
-- the bucket never gets two markers: keeps the later end in the marker (made if missing), returns it.
DECLARE
    v_setting text;
    v_end bigint;
BEGIN
    v_setting := set_config('lock_timeout', p_lock_timeout || 'ms', true);
    IF NOT pg_try_advisory_xact_lock(p_lock) THEN
        PERFORM pg_advisory_xact_lock(p_lock);
    END IF;
    UPDATE {table} SET paused = greatest(paused, p_until) WHERE bucket = p_bucket AND ts IS NULL
        RETURNING paused INTO v_end;
    IF NOT FOUND THEN
        INSERT INTO {table} (bucket, cum, paused) VALUES (p_bucket, 0, p_until);
        v_end := p_until;
    END IF;
    RETURN v_end;
END

-- name: pause
SELECT {pause}(%s::bigint, %s::text, %s::bigint, %s::bigint)

-- name: paused
SELECT coalesce((SELECT paused FROM {table} WHERE bucket = %s AND ts IS NULL), 0)

-- name: decide_call
-- Text parameters: the lock, the bucket, the items' names and numbers (items), the limits,
-- the spans, record, the lock timeout, durable.
SELECT {function}($1::bigint, $2::text, $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::boolean,
$8::bigint, $9::boolean)

-- name: count
SELECT coalesce((SELECT cum FROM {table} WHERE bucket = %(bucket)s ORDER BY cum DESC LIMIT 1), 0)
- coalesce((SELECT cum FROM {table} WHERE bucket = %(bucket)s AND ts IS NULL), 0)

-- name: peek
-- The unit index places from the newest lies in the first row whose running total reaches it,
-- unless it is at or below the base: then it was trimmed (or never existed).
SELECT name, ts FROM {table}, (SELECT (SELECT cum FROM {table} WHERE bucket = %(bucket)s ORDER BY cum DESC LIMIT 1)
- %(index)s::bigint AS unit, coalesce((SELECT cum FROM {table} WHERE bucket = %(bucket)s AND ts IS NULL), 0) AS base) u
WHERE bucket = %(bucket)s AND u.unit > u.base AND cum >= u.unit ORDER BY cum, weight DESC LIMIT 1

-- name: state
-- Limiter.state in one statement (one snapshot): the total, the base, the newest trimmed stamp and
-- the pause's end, then per rate (limits and spans in order) the stamp of the first row whose
-- running total reaches total + weight - limit, the running total of the newest row no longer
-- counted at t and the stamp of the oldest counted.
WITH s AS (SELECT coalesce((SELECT cum FROM {table} WHERE bucket = %(bucket)s ORDER BY cum DESC LIMIT 1), 0) AS total,
coalesce((SELECT cum FROM {table} WHERE bucket = %(bucket)s AND ts IS NULL), 0) AS base,
(SELECT weight FROM {table} WHERE bucket = %(bucket)s AND ts IS NULL) AS trimmed,
(SELECT paused FROM {table} WHERE bucket = %(bucket)s AND ts IS NULL) AS paused)
SELECT s.total, s.base, s.trimmed, s.paused,
array(SELECT (SELECT ts FROM {table} WHERE bucket = %(bucket)s AND ts IS NOT NULL
AND cum >= s.total + %(weight)s - r.lim ORDER BY cum, weight DESC LIMIT 1)
FROM unnest(%(limits)s::bigint[]) WITH ORDINALITY AS r(lim, i) ORDER BY r.i),
array(SELECT (SELECT cum FROM {table} WHERE bucket = %(bucket)s AND ts <= %(t)s - r.span
ORDER BY ts DESC, cum DESC LIMIT 1) FROM unnest(%(spans)s::bigint[]) WITH ORDINALITY AS r(span, i) ORDER BY r.i),
array(SELECT (SELECT ts FROM {table} WHERE bucket = %(bucket)s AND ts > %(t)s - r.span AND weight > 0
ORDER BY ts, cum LIMIT 1) FROM unnest(%(spans)s::bigint[]) WITH ORDINALITY AS r(span, i) ORDER BY r.i)
FROM s

-- name: leak
SELECT trimmed FROM {trim}(%s::text, %s::bigint)

-- name: flush
DELETE FROM {table} WHERE bucket = %s

-- name: release
-- Rows after a row of weight have a running total at least its own; rows before, less.
WITH gone AS (DELETE FROM {table} WHERE ctid = (SELECT ctid FROM {table} WHERE bucket = %(bucket)s
AND ts = %(ts)s AND weight = %(weight)s AND name = %(name)s ORDER BY cum DESC LIMIT 1) RETURNING cum, ctid)
UPDATE {table} SET cum = cum - %(weight)s WHERE bucket = %(bucket)s AND %(weight)s::bigint <> 0
AND cum >= (SELECT cum FROM gone) AND ctid <> (SELECT ctid FROM gone)
