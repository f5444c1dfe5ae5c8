-- The scaling rate of cluster mode (lambdad/store/postgres_ledger.py, docs/cluster.md): one
-- token bucket per function, shared by every node. A bucket holds up to p_rate tokens and
-- refills at p_rate per p_window seconds, on the database's clock; a node takes tokens before
-- it starts new environments (a cold start), so the cluster as a whole adds no more
-- environments of a function per window than the rate allows. A bucket not touched for a
-- window is full again, so its row may be deleted (lambdad_sweep_tokens; lambdad_take_tokens
-- treats a missing row as full).
CREATE TABLE scale_tokens (
    scope text COLLATE "C" PRIMARY KEY,
    tokens double precision NOT NULL,
    at timestamptz NOT NULL
);
CREATE INDEX scale_tokens_at ON scale_tokens (at);

-- Take p_need tokens and up to p_spare more (at most half of what is left after p_need) from
-- the bucket of p_scope, refilled to now; returns (tokens granted, seconds until p_need would
-- be there). Nothing is taken when p_need is not there: granted 0.
CREATE FUNCTION lambdad_take_tokens(
    p_scope text, p_need integer, p_spare integer, p_rate integer, p_window double precision,
    OUT granted integer, OUT wait double precision
) LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := clock_timestamp();
    have double precision;
    last timestamptz;
BEGIN
    LOOP  -- a sweep may delete the row between the two statements: make it again
        INSERT INTO scale_tokens (scope, tokens, at) VALUES (p_scope, p_rate, now_)
            ON CONFLICT (scope) DO NOTHING;
        SELECT tokens, at INTO have, last FROM scale_tokens WHERE scope = p_scope FOR UPDATE;
        EXIT WHEN FOUND;
    END LOOP;
    now_ := greatest(clock_timestamp(), last);
    have := least(p_rate::double precision,
                  have + extract(epoch FROM now_ - last) * p_rate / p_window);
    IF have < p_need THEN
        granted := 0;
        wait := (p_need - have) * p_window / p_rate;
    ELSE
        granted := p_need + greatest(0, least(p_spare, floor((have - p_need) / 2)::integer));
        wait := 0;
    END IF;
    UPDATE scale_tokens SET tokens = have - granted, at = now_ WHERE scope = p_scope;
END
$$;

-- Give back p_count tokens taken but not used (never beyond p_rate).
CREATE FUNCTION lambdad_give_tokens(p_scope text, p_count integer, p_rate integer)
RETURNS void LANGUAGE sql AS $$
    UPDATE scale_tokens SET tokens = least(p_rate::double precision, tokens + p_count)
        WHERE scope = p_scope;
$$;

-- Delete the buckets untouched for p_age seconds (full again: as good as no row), a few at a
-- time and never one a take holds; returns how many went.
CREATE FUNCTION lambdad_sweep_tokens(p_age double precision, p_batch integer)
RETURNS integer LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM scale_tokens WHERE scope IN (
            SELECT scope FROM scale_tokens
                WHERE at < clock_timestamp() - make_interval(secs => p_age)
                ORDER BY at LIMIT p_batch FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT count(*)::integer FROM gone;
$$;
