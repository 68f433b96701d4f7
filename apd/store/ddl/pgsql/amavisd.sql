-- apd's own DDL for the amavisd database on PostgreSQL: the white/black-list tables apd
-- and its admin tools use (names and types as in iRedMail's Amavisd schema; e-mail columns
-- are BYTEA, compared byte-exact). Created only in an empty database.
CREATE TABLE IF NOT EXISTS policy (
    id SERIAL PRIMARY KEY,
    policy_name VARCHAR(255)
);
CREATE TABLE IF NOT EXISTS users (
    id SERIAL PRIMARY KEY,
    priority INTEGER NOT NULL DEFAULT 7,
    policy_id INTEGER NOT NULL DEFAULT 1 CHECK (policy_id >= 0),
    email BYTEA NOT NULL UNIQUE,
    fullname VARCHAR(255)
);
CREATE TABLE IF NOT EXISTS mailaddr (
    id SERIAL PRIMARY KEY,
    priority INTEGER NOT NULL DEFAULT 7,
    email BYTEA NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS wblist (
    rid INTEGER NOT NULL CHECK (rid >= 0),
    sid INTEGER NOT NULL CHECK (sid >= 0),
    wb VARCHAR(10) NOT NULL,
    PRIMARY KEY (rid, sid)
);
CREATE TABLE IF NOT EXISTS outbound_wblist (
    rid INTEGER NOT NULL CHECK (rid >= 0),
    sid INTEGER NOT NULL CHECK (sid >= 0),
    wb VARCHAR(10) NOT NULL,
    PRIMARY KEY (rid, sid)
);
