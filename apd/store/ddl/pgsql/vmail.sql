-- apd's own DDL for the vmail database on PostgreSQL: the mail-account tables and the
-- columns apd reads (names and types as in iRedMail). apd --init-db creates them only in an
-- empty database; an existing iRedMail vmail database is never touched.
CREATE TABLE IF NOT EXISTS domain (
    domain VARCHAR(255) NOT NULL DEFAULT '' PRIMARY KEY,
    description TEXT,
    transport VARCHAR(255) NOT NULL DEFAULT 'dovecot',
    backupmx INT2 NOT NULL DEFAULT 0,
    settings TEXT,
    created TIMESTAMP NOT NULL DEFAULT NOW(),
    modified TIMESTAMP NOT NULL DEFAULT NOW(),
    expired TIMESTAMP NOT NULL DEFAULT '9999-12-31 00:00:00',
    active INT2 NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS idx_domain_backupmx ON domain (backupmx);
CREATE INDEX IF NOT EXISTS idx_domain_active ON domain (active);
CREATE TABLE IF NOT EXISTS alias_domain (
    alias_domain VARCHAR(255) NOT NULL PRIMARY KEY,
    target_domain VARCHAR(255) NOT NULL,
    created TIMESTAMP NOT NULL DEFAULT NOW(),
    modified TIMESTAMP NOT NULL DEFAULT NOW(),
    active INT2 NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS idx_alias_domain_target_domain ON alias_domain (target_domain);
CREATE TABLE IF NOT EXISTS mailbox (
    username VARCHAR(255) NOT NULL PRIMARY KEY,
    password VARCHAR(255) NOT NULL DEFAULT '',
    name VARCHAR(255) NOT NULL DEFAULT '',
    domain VARCHAR(255) NOT NULL DEFAULT '',
    passwordlastchange TIMESTAMP NOT NULL DEFAULT NOW(),
    active INT2 NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS idx_mailbox_domain ON mailbox (domain);
CREATE TABLE IF NOT EXISTS alias (
    address VARCHAR(255) NOT NULL DEFAULT '' PRIMARY KEY,
    name VARCHAR(255) NOT NULL DEFAULT '',
    accesspolicy VARCHAR(30) NOT NULL DEFAULT '',
    domain VARCHAR(255) NOT NULL DEFAULT '',
    active INT2 NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS idx_alias_domain ON alias (domain);
CREATE TABLE IF NOT EXISTS forwardings (
    id SERIAL PRIMARY KEY,
    address VARCHAR(255) NOT NULL DEFAULT '',
    forwarding VARCHAR(255) NOT NULL DEFAULT '',
    domain VARCHAR(255) NOT NULL DEFAULT '',
    dest_domain VARCHAR(255) NOT NULL DEFAULT '',
    is_maillist INT2 NOT NULL DEFAULT 0,
    is_list INT2 NOT NULL DEFAULT 0,
    is_forwarding INT2 NOT NULL DEFAULT 0,
    is_alias INT2 NOT NULL DEFAULT 0,
    active INT2 NOT NULL DEFAULT 1,
    UNIQUE (address, forwarding)
);
CREATE INDEX IF NOT EXISTS idx_forwardings_domain ON forwardings (domain);
CREATE INDEX IF NOT EXISTS idx_forwardings_dest_domain ON forwardings (dest_domain);
CREATE TABLE IF NOT EXISTS moderators (
    id SERIAL PRIMARY KEY,
    address VARCHAR(255) NOT NULL DEFAULT '',
    moderator VARCHAR(255) NOT NULL DEFAULT '',
    domain VARCHAR(255) NOT NULL DEFAULT '',
    dest_domain VARCHAR(255) NOT NULL DEFAULT '',
    UNIQUE (address, moderator)
);
CREATE TABLE IF NOT EXISTS maillist_owners (
    id SERIAL PRIMARY KEY,
    address VARCHAR(255) NOT NULL DEFAULT '',
    owner VARCHAR(255) NOT NULL DEFAULT '',
    domain VARCHAR(255) NOT NULL DEFAULT '',
    dest_domain VARCHAR(255) NOT NULL DEFAULT '',
    UNIQUE (address, owner)
);
CREATE TABLE IF NOT EXISTS maillists (
    id SERIAL PRIMARY KEY,
    address VARCHAR(255) NOT NULL DEFAULT '' UNIQUE,
    domain VARCHAR(255) NOT NULL DEFAULT '',
    transport VARCHAR(255) NOT NULL DEFAULT '',
    accesspolicy VARCHAR(30) NOT NULL DEFAULT '',
    maxmsgsize BIGINT NOT NULL DEFAULT 0,
    mlid VARCHAR(100) NOT NULL DEFAULT '',
    is_newsletter INT2 NOT NULL DEFAULT 0,
    name VARCHAR(255) NOT NULL DEFAULT '',
    description TEXT,
    active INT2 NOT NULL DEFAULT 1
);
