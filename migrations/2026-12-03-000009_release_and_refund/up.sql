-- Holds can end before they lapse and sales can be undone:
--   RELEASED: the holder let the hold go, or its date was cancelled while
--             it was held;
--   REFUNDED: paid, then the date was cancelled and the price went back.
-- A REFUNDED reservation keeps its payment; its seat is no longer sold.
ALTER TABLE reservations
    DROP CONSTRAINT reservations_status,
    DROP CONSTRAINT reservations_paid_has_payment;
ALTER TABLE reservations
    MODIFY status VARCHAR(8) NOT NULL,
    ADD CONSTRAINT reservations_status
        CHECK (status IN ('HELD', 'PAID', 'EXPIRED', 'RELEASED', 'REFUNDED')),
    ADD CONSTRAINT reservations_paid_has_payment
        CHECK ((status IN ('PAID', 'REFUNDED')) = (payment_id IS NOT NULL));

-- A cancelled date's seats are CANCELLED: no hold can take them (the one
-- conditional write of a hold matches only AVAILABLE or lapsed HELD seats).
ALTER TABLE seats DROP CONSTRAINT seats_status;
ALTER TABLE seats
    ADD CONSTRAINT seats_status CHECK (status IN ('AVAILABLE', 'HELD', 'SOLD', 'CANCELLED'));

-- A refund is a balance entry of its own, one per refunded reservation
-- (the unique key makes a second impossible). It applies even past the
-- balance cap, which limits charges only, so the cap leaves the constraints.
ALTER TABLE balance_entries
    DROP CONSTRAINT balance_entries_kind,
    DROP CONSTRAINT balance_entries_sign,
    DROP CONSTRAINT balance_entries_after_in_range;
ALTER TABLE balance_entries
    ADD COLUMN reservation_id BINARY(16) NULL,
    ADD UNIQUE KEY balance_entries_one_refund (reservation_id),
    ADD CONSTRAINT balance_entries_reservation
        FOREIGN KEY (reservation_id) REFERENCES reservations (id),
    ADD CONSTRAINT balance_entries_kind CHECK (kind IN ('CHARGE', 'PAYMENT', 'REFUND')),
    ADD CONSTRAINT balance_entries_sign CHECK (
        (kind = 'CHARGE' AND amount > 0 AND payment_id IS NULL AND reservation_id IS NULL)
        OR (kind = 'PAYMENT' AND amount <= 0 AND payment_id IS NOT NULL AND reservation_id IS NULL)
        OR (kind = 'REFUND' AND amount > 0 AND payment_id IS NOT NULL AND reservation_id IS NOT NULL)
    ),
    ADD CONSTRAINT balance_entries_after_in_range CHECK (balance_after >= 0);
ALTER TABLE users DROP CONSTRAINT users_balance_in_range;
ALTER TABLE users ADD CONSTRAINT users_balance_in_range CHECK (balance >= 0);
