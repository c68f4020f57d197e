ALTER TABLE concert_dates
    DROP COLUMN cancelled_at,
    DROP COLUMN sales_open_at;
