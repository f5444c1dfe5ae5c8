-- Content-addressed code and layer zips of cluster mode (lambdad/store/postgres_blobs.py):
-- one row per blob, written last in the transaction that stores its chunks, so a blob that
-- has a row is complete. Chunks are 1 MiB slices of the zip in order; a zip does not compress,
-- so the column skips TOAST's compression (EXTERNAL) and is only moved out of line.
-- Blobs are shared by every account, as on a single node: the key is the SHA-256 of the bytes.
CREATE TABLE blob_chunks (
    key text COLLATE "C" NOT NULL,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (key, seq)
);
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE blobs (
    key text COLLATE "C" PRIMARY KEY,
    size bigint NOT NULL,
    chunks integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
