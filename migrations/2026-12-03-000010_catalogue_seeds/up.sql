-- A catalogue loaded at start (the demo) is loaded once per database: the
-- load writes its row here first, in the transaction that loads it, so a
-- second loader, on this server or on another node of a cluster, conflicts
-- with it and then finds it, and loads nothing.
CREATE TABLE catalogue_seeds (
    name       VARCHAR(32)  NOT NULL,
    seeded_at  DATETIME(6)  NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
