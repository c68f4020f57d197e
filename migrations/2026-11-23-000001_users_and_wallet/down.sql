DROP TABLE server_secrets;
DROP TABLE idempotency_keys;
DROP TABLE balance_entries;
DROP TABLE users;
