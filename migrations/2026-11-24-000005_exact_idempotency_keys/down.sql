-- Fails if two keys now differ only in trailing spaces, as it must: going
-- back would merge them.
ALTER TABLE idempotency_keys
    MODIFY idempotency_key VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
