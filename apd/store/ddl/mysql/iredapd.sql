-- apd's own DDL for the iredapd database on MySQL/MariaDB (column names, types and keys as
-- in iRedAPD's schema). apd --init-db creates the tables that are missing and never alters
-- an existing one.
CREATE TABLE IF NOT EXISTS throttle (
    id BIGINT(20) UNSIGNED AUTO_INCREMENT,
    account VARCHAR(255) NOT NULL,
    kind VARCHAR(10) NOT NULL DEFAULT 'outbound',
    priority TINYINT(1) UNSIGNED NOT NULL DEFAULT 0,
    period INT(10) UNSIGNED NOT NULL DEFAULT 0,
    msg_size BIGINT(20) NOT NULL DEFAULT -1,
    max_msgs BIGINT(20) NOT NULL DEFAULT -1,
    max_quota BIGINT(20) NOT NULL DEFAULT -1,
    max_rcpts BIGINT(20) NOT NULL DEFAULT -1,
    PRIMARY KEY (id),
    UNIQUE INDEX account_kind (account, kind)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS throttle_tracking (
    id BIGINT(20) UNSIGNED AUTO_INCREMENT,
    tid BIGINT(20) UNSIGNED NOT NULL DEFAULT 0,
    account VARCHAR(255) NOT NULL DEFAULT '',
    period INT(10) UNSIGNED NOT NULL DEFAULT 0,
    cur_msgs MEDIUMINT(8) UNSIGNED NOT NULL DEFAULT 0,
    cur_quota INT(10) UNSIGNED NOT NULL DEFAULT 0,
    init_time INT(10) UNSIGNED NOT NULL DEFAULT 0,
    last_time INT(10) UNSIGNED NOT NULL DEFAULT 0,
    last_notify_time INT(10) UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    FOREIGN KEY (tid) REFERENCES throttle (id),
    UNIQUE INDEX tid_account (tid, account)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS greylisting (
    id BIGINT(20) UNSIGNED AUTO_INCREMENT,
    account VARCHAR(100) NOT NULL DEFAULT '',
    priority TINYINT(2) NOT NULL DEFAULT 0,
    sender VARCHAR(100) NOT NULL DEFAULT '',
    sender_priority TINYINT(2) NOT NULL DEFAULT 0,
    comment VARCHAR(255) NOT NULL DEFAULT '',
    active TINYINT(1) NOT NULL DEFAULT 1,
    PRIMARY KEY (id),
    UNIQUE INDEX (account, sender),
    INDEX (comment)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS greylisting_whitelists (
    id BIGINT(20) UNSIGNED AUTO_INCREMENT,
    account VARCHAR(100) NOT NULL DEFAULT '',
    sender VARCHAR(100) NOT NULL DEFAULT '',
    comment VARCHAR(255) NOT NULL DEFAULT '',
    PRIMARY KEY (id),
    UNIQUE INDEX (account, sender),
    INDEX (comment)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS greylisting_whitelist_domains (
    id BIGINT(20) UNSIGNED AUTO_INCREMENT,
    domain VARCHAR(255) NOT NULL DEFAULT '',
    PRIMARY KEY (id),
    UNIQUE INDEX (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS greylisting_whitelist_domain_spf (
    id BIGINT(20) UNSIGNED AUTO_INCREMENT,
    account VARCHAR(100) NOT NULL DEFAULT '',
    sender VARCHAR(100) NOT NULL DEFAULT '',
    comment VARCHAR(255) NOT NULL DEFAULT '',
    PRIMARY KEY (id),
    UNIQUE INDEX (account, sender),
    INDEX (comment)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS greylisting_tracking (
    id BIGINT(20) UNSIGNED NOT NULL AUTO_INCREMENT,
    sender VARCHAR(255) NOT NULL,
    recipient VARCHAR(255) NOT NULL,
    client_address VARCHAR(40) NOT NULL,
    sender_domain VARCHAR(255) NOT NULL DEFAULT '',
    rcpt_domain VARCHAR(255) NOT NULL DEFAULT '',
    init_time INT(10) UNSIGNED NOT NULL DEFAULT 0,
    block_expired INT(10) UNSIGNED NOT NULL DEFAULT 0,
    record_expired INT(10) UNSIGNED NOT NULL DEFAULT 0,
    blocked_count BIGINT(20) NOT NULL DEFAULT 0,
    passed TINYINT(1) NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    UNIQUE INDEX (sender, recipient, client_address),
    INDEX (sender_domain),
    INDEX (rcpt_domain),
    INDEX client_address_passed (client_address, passed)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS wblist_rdns (
    id BIGINT(20) UNSIGNED AUTO_INCREMENT,
    rdns VARCHAR(255) NOT NULL DEFAULT '',
    wb VARCHAR(10) NOT NULL DEFAULT 'B',
    PRIMARY KEY (id),
    UNIQUE INDEX (rdns),
    INDEX (wb)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS srs_exclude_domains (
    id BIGINT(20) UNSIGNED AUTO_INCREMENT,
    domain VARCHAR(255) NOT NULL DEFAULT '',
    PRIMARY KEY (id),
    UNIQUE INDEX (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS senderscore_cache (
    client_address VARCHAR(40) NOT NULL DEFAULT '',
    score INT(3) UNSIGNED DEFAULT 0,
    time INT(10) UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (client_address),
    INDEX (score),
    INDEX (time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS smtp_sessions (
    id BIGINT(20) UNSIGNED AUTO_INCREMENT,
    time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    time_num INT(10) UNSIGNED NOT NULL DEFAULT 0,
    action VARCHAR(20) NOT NULL DEFAULT '',
    reason VARCHAR(150) NOT NULL DEFAULT '',
    instance VARCHAR(40) NOT NULL DEFAULT '',
    client_address VARCHAR(40) NOT NULL DEFAULT '',
    client_name VARCHAR(255) NOT NULL DEFAULT '',
    reverse_client_name VARCHAR(255) NOT NULL DEFAULT '',
    helo_name VARCHAR(255) NOT NULL DEFAULT '',
    sender VARCHAR(255) NOT NULL DEFAULT '',
    sender_domain VARCHAR(255) NOT NULL DEFAULT '',
    sasl_username VARCHAR(255) NOT NULL DEFAULT '',
    sasl_domain VARCHAR(255) NOT NULL DEFAULT '',
    recipient VARCHAR(255) NOT NULL DEFAULT '',
    recipient_domain VARCHAR(255) NOT NULL DEFAULT '',
    encryption_protocol VARCHAR(20) NOT NULL DEFAULT '',
    encryption_cipher VARCHAR(50) NOT NULL DEFAULT '',
    server_address VARCHAR(40) NOT NULL DEFAULT '',
    server_port VARCHAR(10) NOT NULL DEFAULT '',
    PRIMARY KEY (id),
    INDEX (time),
    INDEX (time_num),
    INDEX (action),
    INDEX (reason),
    INDEX (instance),
    INDEX (client_address),
    INDEX (client_name),
    INDEX (reverse_client_name),
    INDEX (helo_name),
    INDEX (sender),
    INDEX (sender_domain),
    INDEX (sasl_username),
    INDEX (sasl_domain),
    INDEX (recipient),
    INDEX (recipient_domain),
    INDEX (encryption_protocol),
    INDEX (encryption_cipher),
    INDEX (server_address),
    INDEX (server_port)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
