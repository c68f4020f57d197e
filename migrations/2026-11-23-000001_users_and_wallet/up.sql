-- Users and the money they hold. A user's id is also their credential, so it
-- is a random UUID stored as 16 bytes; money is DECIMAL(15,2), never a float.
CREATE TABLE users (
    id          BINARY(16)     NOT NULL,
    name        VARCHAR(50)    NOT NULL,
    balance     DECIMAL(15, 2) NOT NULL DEFAULT 0.00,
    created_at  DATETIME(6)    NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT users_balance_in_range CHECK (balance >= 0 AND balance <= 1000000000.00)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every change to a balance. Entries of one user are written while that
-- user's row is locked, so the AUTO_INCREMENT order is the order of changes.
CREATE TABLE balance_entries (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    user_id        BINARY(16)      NOT NULL,
    kind           VARCHAR(8)      NOT NULL,
    amount         DECIMAL(15, 2)  NOT NULL,
    balance_after  DECIMAL(15, 2)  NOT NULL,
    payment_id     BINARY(16)      NULL,
    at             DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    KEY balance_entries_by_user (user_id, id),
    KEY balance_entries_by_payment (payment_id),
    CONSTRAINT balance_entries_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT balance_entries_kind CHECK (kind IN ('CHARGE', 'PAYMENT')),
    CONSTRAINT balance_entries_sign CHECK (
        (kind = 'CHARGE' AND amount > 0 AND payment_id IS NULL)
        OR (kind = 'PAYMENT' AND amount <= 0 AND payment_id IS NOT NULL)
    ),
    CONSTRAINT balance_entries_after_in_range CHECK (balance_after >= 0 AND balance_after <= 1000000000.00)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per (user, operation, key): the primary key is what makes
-- concurrent retries with one idempotency key apply once.
CREATE TABLE idempotency_keys (
    user_id          BINARY(16)   NOT NULL,
    scope            VARCHAR(8)   NOT NULL,
    idempotency_key  VARCHAR(100) NOT NULL,
    payment_id       BINARY(16)   NULL,
    created_at       DATETIME(6)  NOT NULL,
    PRIMARY KEY (user_id, scope, idempotency_key),
    CONSTRAINT idempotency_keys_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT idempotency_keys_scope CHECK (scope IN ('CHARGE', 'PAY'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Server-wide secrets that every process on one database must share
-- (the queue token signing key when TOKEN_SECRET is not set).
CREATE TABLE server_secrets (
    name        VARCHAR(32)    NOT NULL,
    secret      VARBINARY(64)  NOT NULL,
    created_at  DATETIME(6)    NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
