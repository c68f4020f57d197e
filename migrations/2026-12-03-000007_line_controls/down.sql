DROP INDEX queue_tokens_by_admission ON queue_tokens;
ALTER TABLE queue_state
    DROP CONSTRAINT queue_state_admit_interval,
    DROP CONSTRAINT queue_state_max_active,
    DROP COLUMN admission_paused,
    DROP COLUMN admit_interval_ms,
    DROP COLUMN max_active_tokens;
