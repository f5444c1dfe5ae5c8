-- The metadata documents, as in the SQLite store: one row per (table, key). The key is the
-- tuple key joined with U+001F (lambdad/store/keys.py) in the "C" collation, so that it sorts
-- by code point and a prefix is a range of the primary key. The document is JSON text, kept
-- as written (json, not jsonb: jsonb refuses some strings JSON allows, and nothing queries
-- inside documents).
CREATE TABLE docs (
    tbl text NOT NULL,
    key text COLLATE "C" NOT NULL,
    doc json NOT NULL,
    PRIMARY KEY (tbl, key)
);
