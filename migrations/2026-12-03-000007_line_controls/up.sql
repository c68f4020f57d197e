-- The line's limits as organizers set them, kept beside the counters so
-- that the admission turn, which holds this row's lock, reads the limits in
-- force at that instant on every server. NULL: the server's own setting
-- (MAX_ACTIVE_TOKENS, ADMIT_INTERVAL_MS) applies.
ALTER TABLE queue_state
    ADD COLUMN max_active_tokens  INT UNSIGNED NULL,
    ADD COLUMN admit_interval_ms  INT UNSIGNED NULL,
    ADD COLUMN admission_paused   BOOLEAN      NOT NULL DEFAULT FALSE,
    ADD CONSTRAINT queue_state_max_active CHECK (max_active_tokens BETWEEN 1 AND 1000000),
    ADD CONSTRAINT queue_state_admit_interval CHECK (admit_interval_ms BETWEEN 10 AND 600000);

-- `line` counts the tokens admitted in the last minute.
CREATE INDEX queue_tokens_by_admission ON queue_tokens (admitted_at);
