CREATE TABLE concerts (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    name        VARCHAR(200)    NOT NULL,
    venue       VARCHAR(200)    NOT NULL,
    created_at  DATETIME(6)     NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE concert_dates (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    concert_id  BIGINT UNSIGNED NOT NULL,
    starts_at   DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY concert_dates_by_concert (concert_id, starts_at),
    CONSTRAINT concert_dates_concert FOREIGN KEY (concert_id) REFERENCES concerts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A seat is the unit that is sold once. Its status says what the last write
-- made of it; a HELD seat whose held_until has passed counts as AVAILABLE
-- everywhere, whether or not the sweep has put it back yet.
CREATE TABLE seats (
    id                      BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    concert_date_id         BIGINT UNSIGNED NOT NULL,
    number                  INT             NOT NULL,
    price                   DECIMAL(15, 2)  NOT NULL,
    status                  VARCHAR(9)      NOT NULL DEFAULT 'AVAILABLE',
    held_by_reservation_id  BINARY(16)      NULL,
    held_until              DATETIME(6)     NULL,
    PRIMARY KEY (id),
    UNIQUE KEY seats_by_date_number (concert_date_id, number),
    KEY seats_by_date_status (concert_date_id, status, held_until),
    KEY seats_by_status_lapse (status, held_until),
    CONSTRAINT seats_concert_date FOREIGN KEY (concert_date_id) REFERENCES concert_dates (id),
    CONSTRAINT seats_number_range CHECK (number BETWEEN 1 AND 50),
    CONSTRAINT seats_price_range CHECK (price >= 0),
    CONSTRAINT seats_status CHECK (status IN ('AVAILABLE', 'HELD', 'SOLD')),
    CONSTRAINT seats_hold_fields CHECK (
        (status = 'HELD') = (held_by_reservation_id IS NOT NULL AND held_until IS NOT NULL)
    )
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
