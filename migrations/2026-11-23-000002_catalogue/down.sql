DROP TABLE seats;
DROP TABLE concert_dates;
DROP TABLE concerts;
