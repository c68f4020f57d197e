-- The line's two counters, one row. Tokens take gapless sequence numbers
-- from last_issued_seq; admission moves admitted_through_seq forward, so every
-- token with seq > admitted_through_seq is WAITING and its position is
-- seq - admitted_through_seq: exact, and one primary-key read at any length.
CREATE TABLE queue_state (
    id                    TINYINT UNSIGNED NOT NULL,
    last_issued_seq       BIGINT UNSIGNED  NOT NULL,
    admitted_through_seq  BIGINT UNSIGNED  NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT queue_state_single_row CHECK (id = 1),
    CONSTRAINT queue_state_cursor CHECK (admitted_through_seq <= last_issued_seq)
) ENGINE = InnoDB;

INSERT INTO queue_state (id, last_issued_seq, admitted_through_seq) VALUES (1, 0, 0);

-- The database never holds a usable token: the bearer string is an HMAC of
-- (seq, user_id, nonce) under the server's secret.
CREATE TABLE queue_tokens (
    seq           BIGINT UNSIGNED NOT NULL,
    user_id       BINARY(16)      NOT NULL,
    nonce         BINARY(16)      NOT NULL,
    status        VARCHAR(7)      NOT NULL,
    issued_at     DATETIME(6)     NOT NULL,
    admitted_at   DATETIME(6)     NULL,
    -- For ACTIVE: the earlier of admission + ACTIVE_TOKEN_SECONDS and the lapse
    -- of the user's earliest live hold. For EXPIRED: when it ended.
    expires_at    DATETIME(6)     NULL,
    -- The user's live holds while the token is ACTIVE. No hold can lapse
    -- while it is (the token ends at the first lapse, and a payment ends it
    -- too), so a counter is exact, and holding is one conditional UPDATE.
    live_holds    INT UNSIGNED    NOT NULL DEFAULT 0,
    live_user_id  BINARY(16) AS (CASE WHEN status <> 'EXPIRED' THEN user_id END) STORED,
    PRIMARY KEY (seq),
    UNIQUE KEY queue_tokens_one_live_per_user (live_user_id),
    KEY queue_tokens_by_status_expiry (status, expires_at),
    KEY queue_tokens_by_user (user_id),
    CONSTRAINT queue_tokens_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT queue_tokens_status CHECK (status IN ('WAITING', 'ACTIVE', 'EXPIRED')),
    CONSTRAINT queue_tokens_admission CHECK (
        (status = 'WAITING' AND admitted_at IS NULL AND expires_at IS NULL)
        OR (status = 'ACTIVE' AND admitted_at IS NOT NULL AND expires_at IS NOT NULL)
        OR (status = 'EXPIRED' AND expires_at IS NOT NULL)
    )
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
