-- When holds on a date may begin, and when an organizer cancelled it.
-- Dates made before organizers could set an opening are on sale since
-- always, and so are rows written without one (the default).
ALTER TABLE concert_dates
    ADD COLUMN sales_open_at  DATETIME(6)  NOT NULL DEFAULT '1970-01-01 00:00:00',
    ADD COLUMN cancelled_at   DATETIME(6)  NULL;
