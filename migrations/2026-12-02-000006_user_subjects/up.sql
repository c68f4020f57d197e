-- AUTH_MODE=jwt: a user belongs to the subject (`sub`) of the site's JWTs.
-- The unique key makes one user per subject, whatever races register it.
-- NULL for users registered in open mode (a unique key allows many NULLs).
ALTER TABLE users
    ADD COLUMN subject VARCHAR(255) NULL,
    ADD UNIQUE KEY users_one_per_subject (subject);
