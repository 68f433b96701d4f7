-- apd's own DDL for the amavisd database on MySQL/MariaDB: the white/black-list tables
-- apd and its admin tools use (names and types as in iRedMail's Amavisd schema; e-mail
-- columns are VARBINARY, so they compare byte-exact). Created only in an empty database.
CREATE TABLE IF NOT EXISTS policy (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT,
    policy_name VARCHAR(255),
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS users (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT,
    priority INTEGER NOT NULL DEFAULT 7,
    policy_id INT UNSIGNED NOT NULL DEFAULT 1,
    email VARBINARY(255) NOT NULL,
    fullname VARCHAR(255) DEFAULT NULL,
    PRIMARY KEY (id),
    UNIQUE INDEX (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS mailaddr (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT,
    priority INTEGER NOT NULL DEFAULT 7,
    email VARBINARY(255) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE INDEX (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS wblist (
    rid INT UNSIGNED NOT NULL,
    sid INT UNSIGNED NOT NULL,
    wb VARCHAR(10) NOT NULL,
    PRIMARY KEY (rid, sid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS outbound_wblist (
    rid INT UNSIGNED NOT NULL,
    sid INT UNSIGNED NOT NULL,
    wb VARCHAR(10) NOT NULL,
    PRIMARY KEY (rid, sid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
