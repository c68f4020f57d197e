ALTER TABLE users DROP KEY users_one_per_subject, DROP COLUMN subject;
