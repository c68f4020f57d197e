-- Idempotency keys compare byte for byte. As VARCHAR under utf8mb4_bin they
-- were compared with trailing spaces ignored (PAD SPACE), so "k " counted as
-- a repeat of "k" and a distinct charge was silently skipped. VARBINARY has
-- no padding on MySQL 8 and MariaDB alike; 400 bytes hold 100 characters.
ALTER TABLE idempotency_keys
    MODIFY idempotency_key VARBINARY(400) NOT NULL;
