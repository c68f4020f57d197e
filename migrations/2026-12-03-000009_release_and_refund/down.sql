ALTER TABLE users DROP CONSTRAINT users_balance_in_range;
ALTER TABLE users
    ADD CONSTRAINT users_balance_in_range CHECK (balance >= 0 AND balance <= 1000000000.00);
ALTER TABLE balance_entries
    DROP CONSTRAINT balance_entries_after_in_range,
    DROP CONSTRAINT balance_entries_sign,
    DROP CONSTRAINT balance_entries_kind,
    DROP FOREIGN KEY balance_entries_reservation,
    DROP KEY balance_entries_one_refund,
    DROP COLUMN reservation_id;
ALTER TABLE balance_entries
    ADD CONSTRAINT balance_entries_kind CHECK (kind IN ('CHARGE', 'PAYMENT')),
    ADD CONSTRAINT balance_entries_sign CHECK (
        (kind = 'CHARGE' AND amount > 0 AND payment_id IS NULL)
        OR (kind = 'PAYMENT' AND amount <= 0 AND payment_id IS NOT NULL)
    ),
    ADD CONSTRAINT balance_entries_after_in_range
        CHECK (balance_after >= 0 AND balance_after <= 1000000000.00);
ALTER TABLE seats DROP CONSTRAINT seats_status;
ALTER TABLE seats ADD CONSTRAINT seats_status CHECK (status IN ('AVAILABLE', 'HELD', 'SOLD'));
ALTER TABLE reservations
    DROP CONSTRAINT reservations_status,
    DROP CONSTRAINT reservations_paid_has_payment;
ALTER TABLE reservations
    MODIFY status VARCHAR(7) NOT NULL,
    ADD CONSTRAINT reservations_status CHECK (status IN ('HELD', 'PAID', 'EXPIRED')),
    ADD CONSTRAINT reservations_paid_has_payment CHECK ((status = 'PAID') = (payment_id IS NOT NULL));
