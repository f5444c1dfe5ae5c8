-- The concurrency ledger of cluster mode (lambdad/store/postgres_ledger.py): each node's grant
-- of invocation slots per scope (a region's unreserved pool, a function's reservation). A
-- grant is live until expires_at, on the database's clock, so a dead node's slots come back
-- once its lease runs out without any other node acting for it.
CREATE TABLE concurrency_grants (
    scope text COLLATE "C" NOT NULL,
    node text COLLATE "C" NOT NULL,
    slots integer NOT NULL CHECK (slots > 0),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (scope, node)
);
CREATE INDEX concurrency_grants_node ON concurrency_grants (node);

-- One claim in one round trip: lock the scope (a transaction-scoped advisory lock on its hash,
-- so claims on one scope take turns and claims on others do not wait), forget expired grants,
-- and set the node's grant to p_need and up to p_spare more (at most half of what is left
-- after p_need) if p_need fits under p_limit beside the others' live grants. Each statement
-- of a plpgsql function reads a fresh snapshot, taken after the lock: the sum is current.
-- Returns the grant, or NULL (the grant unchanged) when p_need does not fit.
CREATE FUNCTION lambdad_claim_slots(
    p_scope text, p_node text, p_need integer, p_spare integer, p_limit integer,
    p_lease double precision
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    taken integer;
    free integer;
    granted integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_scope, 16));
    DELETE FROM concurrency_grants WHERE scope = p_scope AND expires_at <= clock_timestamp();
    SELECT coalesce(sum(slots), 0) INTO taken
        FROM concurrency_grants WHERE scope = p_scope AND node <> p_node;
    free := p_limit - taken;
    IF p_need > free THEN
        RETURN NULL;
    END IF;
    granted := p_need + greatest(0, least(p_spare, (free - p_need) / 2));
    INSERT INTO concurrency_grants AS g (scope, node, slots, expires_at)
        VALUES (p_scope, p_node, granted, clock_timestamp() + make_interval(secs => p_lease))
        ON CONFLICT (scope, node)
        DO UPDATE SET slots = excluded.slots, expires_at = excluded.expires_at;
    RETURN granted;
END
$$;
