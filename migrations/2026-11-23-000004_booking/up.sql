CREATE TABLE payments (
    id       BINARY(16)      NOT NULL,
    user_id  BINARY(16)      NOT NULL,
    amount   DECIMAL(15, 2)  NOT NULL,
    paid_at  DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    KEY payments_by_user (user_id, paid_at),
    CONSTRAINT payments_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT payments_amount_range CHECK (amount >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A reservation is one user's hold on one seat, and later its sale. A HELD
-- reservation whose held_until has passed reads as EXPIRED everywhere.
-- paid_seat_id is set exactly for PAID rows, so its unique key makes a
-- second sale of a seat impossible whatever the application does.
CREATE TABLE reservations (
    id            BINARY(16)      NOT NULL,
    user_id       BINARY(16)      NOT NULL,
    seat_id       BIGINT UNSIGNED NOT NULL,
    token_seq     BIGINT UNSIGNED NOT NULL,
    status        VARCHAR(7)      NOT NULL,
    price         DECIMAL(15, 2)  NOT NULL,
    created_at    DATETIME(6)     NOT NULL,
    held_until    DATETIME(6)     NOT NULL,
    payment_id    BINARY(16)      NULL,
    paid_seat_id  BIGINT UNSIGNED AS (CASE WHEN status = 'PAID' THEN seat_id END) STORED,
    PRIMARY KEY (id),
    UNIQUE KEY reservations_one_sale_per_seat (paid_seat_id),
    KEY reservations_by_user (user_id, status, held_until),
    KEY reservations_by_user_created (user_id, created_at),
    KEY reservations_by_status_lapse (status, held_until),
    KEY reservations_by_payment (payment_id),
    KEY reservations_by_seat (seat_id),
    CONSTRAINT reservations_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT reservations_seat FOREIGN KEY (seat_id) REFERENCES seats (id),
    CONSTRAINT reservations_token FOREIGN KEY (token_seq) REFERENCES queue_tokens (seq),
    CONSTRAINT reservations_payment FOREIGN KEY (payment_id) REFERENCES payments (id),
    CONSTRAINT reservations_status CHECK (status IN ('HELD', 'PAID', 'EXPIRED')),
    CONSTRAINT reservations_paid_has_payment CHECK ((status = 'PAID') = (payment_id IS NOT NULL))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- seats.held_by_reservation_id has no foreign key on purpose: a hold takes
-- the seat's row lock first (the one write that decides the race) and only
-- then inserts its reservation, so that concurrent callers queue on one
-- exclusive lock instead of upgrading shared foreign-key locks into
-- deadlocks. `ticket-reservation check` verifies the reference instead.
ALTER TABLE balance_entries
    ADD CONSTRAINT balance_entries_payment FOREIGN KEY (payment_id) REFERENCES payments (id);
ALTER TABLE idempotency_keys
    ADD CONSTRAINT idempotency_keys_payment FOREIGN KEY (payment_id) REFERENCES payments (id);
