-- apd's own DDL for the embedded SQLite store: the vmail, amavisd and iredapd tables of
-- iRedMail/iRedAPD (column names as in their schemas) in one database file.
-- vmail (mail accounts) -------------------------------------------------------------
CREATE TABLE IF NOT EXISTS domain (
    domain TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    transport TEXT NOT NULL DEFAULT 'dovecot',
    backupmx INTEGER NOT NULL DEFAULT 0,
    settings TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL DEFAULT '1970-01-01 01:01:01',
    modified TEXT NOT NULL DEFAULT '1970-01-01 01:01:01',
    expired TEXT NOT NULL DEFAULT '9999-12-31 00:00:00',
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS alias_domain (
    alias_domain TEXT PRIMARY KEY NOT NULL,
    target_domain TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT '1970-01-01 01:01:01',
    modified TEXT NOT NULL DEFAULT '1970-01-01 01:01:01',
    active INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS alias_domain_target ON alias_domain (target_domain);
CREATE TABLE IF NOT EXISTS mailbox (
    username TEXT PRIMARY KEY NOT NULL,
    password TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    domain TEXT NOT NULL DEFAULT '',
    passwordlastchange TEXT NOT NULL DEFAULT '1970-01-01 01:01:01',
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS alias (
    address TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    accesspolicy TEXT NOT NULL DEFAULT '',
    domain TEXT NOT NULL DEFAULT '',
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS forwardings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL DEFAULT '',
    forwarding TEXT NOT NULL DEFAULT '',
    domain TEXT NOT NULL DEFAULT '',
    dest_domain TEXT NOT NULL DEFAULT '',
    is_maillist INTEGER NOT NULL DEFAULT 0,
    is_list INTEGER NOT NULL DEFAULT 0,
    is_forwarding INTEGER NOT NULL DEFAULT 0,
    is_alias INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    UNIQUE (address, forwarding)
);
CREATE TABLE IF NOT EXISTS moderators (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL DEFAULT '',
    moderator TEXT NOT NULL DEFAULT '',
    domain TEXT NOT NULL DEFAULT '',
    dest_domain TEXT NOT NULL DEFAULT '',
    UNIQUE (address, moderator)
);
CREATE TABLE IF NOT EXISTS maillist_owners (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    domain TEXT NOT NULL DEFAULT '',
    dest_domain TEXT NOT NULL DEFAULT '',
    UNIQUE (address, owner)
);
CREATE TABLE IF NOT EXISTS maillists (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL DEFAULT '' UNIQUE,
    domain TEXT NOT NULL DEFAULT '',
    transport TEXT NOT NULL DEFAULT '',
    accesspolicy TEXT NOT NULL DEFAULT '',
    maxmsgsize INTEGER NOT NULL DEFAULT 0,
    mlid TEXT NOT NULL DEFAULT '',
    is_newsletter INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL DEFAULT '',
    description TEXT,
    active INTEGER NOT NULL DEFAULT 1
);
-- amavisd (white/black lists) ---------------------------------------------------------
CREATE TABLE IF NOT EXISTS policy (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_name TEXT
);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL DEFAULT 7,
    policy_id INTEGER NOT NULL DEFAULT 1,
    email BLOB NOT NULL UNIQUE,
    fullname TEXT
);
CREATE TABLE IF NOT EXISTS mailaddr (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL DEFAULT 7,
    email BLOB NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS wblist (
    rid INTEGER NOT NULL,
    sid INTEGER NOT NULL,
    wb TEXT NOT NULL,
    PRIMARY KEY (rid, sid)
);
CREATE TABLE IF NOT EXISTS outbound_wblist (
    rid INTEGER NOT NULL,
    sid INTEGER NOT NULL,
    wb TEXT NOT NULL,
    PRIMARY KEY (rid, sid)
);
-- iredapd (apd's own state) -----------------------------------------------------------
CREATE TABLE IF NOT EXISTS throttle (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'outbound',
    priority INTEGER NOT NULL DEFAULT 0,
    period INTEGER NOT NULL DEFAULT 0,
    msg_size INTEGER NOT NULL DEFAULT -1,
    max_msgs INTEGER NOT NULL DEFAULT -1,
    max_quota INTEGER NOT NULL DEFAULT -1,
    max_rcpts INTEGER NOT NULL DEFAULT -1,
    UNIQUE (account, kind)
);
CREATE TABLE IF NOT EXISTS throttle_tracking (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tid INTEGER NOT NULL DEFAULT 0 REFERENCES throttle (id),
    account TEXT NOT NULL DEFAULT '',
    period INTEGER NOT NULL DEFAULT 0,
    cur_msgs INTEGER NOT NULL DEFAULT 0,
    cur_quota INTEGER NOT NULL DEFAULT 0,
    init_time INTEGER NOT NULL DEFAULT 0,
    last_time INTEGER NOT NULL DEFAULT 0,
    last_notify_time INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tid, account)
);
CREATE TABLE IF NOT EXISTS greylisting (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL DEFAULT '',
    priority INTEGER NOT NULL DEFAULT 0,
    sender TEXT NOT NULL DEFAULT '',
    sender_priority INTEGER NOT NULL DEFAULT 0,
    comment TEXT NOT NULL DEFAULT '',
    active INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account, sender)
);
CREATE INDEX IF NOT EXISTS greylisting_comment ON greylisting (comment);
CREATE TABLE IF NOT EXISTS greylisting_whitelists (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL DEFAULT '',
    sender TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    UNIQUE (account, sender)
);
CREATE INDEX IF NOT EXISTS greylisting_whitelists_comment ON greylisting_whitelists (comment);
CREATE TABLE IF NOT EXISTS greylisting_whitelist_domains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain TEXT NOT NULL DEFAULT '' UNIQUE
);
CREATE TABLE IF NOT EXISTS greylisting_whitelist_domain_spf (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL DEFAULT '',
    sender TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    UNIQUE (account, sender)
);
CREATE INDEX IF NOT EXISTS greylisting_whitelist_domain_spf_comment ON greylisting_whitelist_domain_spf (comment);
CREATE TABLE IF NOT EXISTS greylisting_tracking (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    client_address TEXT NOT NULL,
    sender_domain TEXT NOT NULL DEFAULT '',
    rcpt_domain TEXT NOT NULL DEFAULT '',
    init_time INTEGER NOT NULL DEFAULT 0,
    block_expired INTEGER NOT NULL DEFAULT 0,
    record_expired INTEGER NOT NULL DEFAULT 0,
    blocked_count INTEGER NOT NULL DEFAULT 0,
    passed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (sender, recipient, client_address)
);
CREATE INDEX IF NOT EXISTS greylisting_tracking_sender_domain ON greylisting_tracking (sender_domain);
CREATE INDEX IF NOT EXISTS greylisting_tracking_rcpt_domain ON greylisting_tracking (rcpt_domain);
CREATE INDEX IF NOT EXISTS greylisting_tracking_client_passed ON greylisting_tracking (client_address, passed);
CREATE TABLE IF NOT EXISTS wblist_rdns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rdns TEXT NOT NULL DEFAULT '' UNIQUE,
    wb TEXT NOT NULL DEFAULT 'B'
);
CREATE INDEX IF NOT EXISTS wblist_rdns_wb ON wblist_rdns (wb);
CREATE TABLE IF NOT EXISTS srs_exclude_domains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain TEXT NOT NULL DEFAULT '' UNIQUE
);
CREATE TABLE IF NOT EXISTS senderscore_cache (
    client_address TEXT NOT NULL DEFAULT '' PRIMARY KEY,
    score INTEGER DEFAULT 0,
    time INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS senderscore_cache_time ON senderscore_cache (time);
CREATE TABLE IF NOT EXISTS smtp_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    time_num INTEGER NOT NULL DEFAULT 0,
    action TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    instance TEXT NOT NULL DEFAULT '',
    client_address TEXT NOT NULL DEFAULT '',
    client_name TEXT NOT NULL DEFAULT '',
    reverse_client_name TEXT NOT NULL DEFAULT '',
    helo_name TEXT NOT NULL DEFAULT '',
    sender TEXT NOT NULL DEFAULT '',
    sender_domain TEXT NOT NULL DEFAULT '',
    sasl_username TEXT NOT NULL DEFAULT '',
    sasl_domain TEXT NOT NULL DEFAULT '',
    recipient TEXT NOT NULL DEFAULT '',
    recipient_domain TEXT NOT NULL DEFAULT '',
    encryption_protocol TEXT NOT NULL DEFAULT '',
    encryption_cipher TEXT NOT NULL DEFAULT '',
    server_address TEXT NOT NULL DEFAULT '',
    server_port TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS smtp_sessions_time_num ON smtp_sessions (time_num);
