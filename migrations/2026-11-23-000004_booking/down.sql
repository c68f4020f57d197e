ALTER TABLE idempotency_keys DROP FOREIGN KEY idempotency_keys_payment;
ALTER TABLE balance_entries DROP FOREIGN KEY balance_entries_payment;
DROP TABLE reservations;
DROP TABLE payments;
