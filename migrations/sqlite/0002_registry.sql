-- Registration data: the regulator's care directory (providers and their locations) and Postroom's own
-- people file (who holds which registered role, under which email address). Providers and locations are
-- never deleted: one that a new care directory no longer lists gets `deregistered_at`, so an old ID is told
-- apart from a mistyped one. Every import is recorded in `registry_imports`.
CREATE TABLE registry_imports (
    id                     INTEGER PRIMARY KEY,
    at                     BIGINT NOT NULL,
    locations_file         TEXT,
    people_file            TEXT,
    providers_listed       BIGINT NOT NULL DEFAULT 0,
    providers_added        BIGINT NOT NULL DEFAULT 0,
    providers_reactivated  BIGINT NOT NULL DEFAULT 0,
    providers_deregistered BIGINT NOT NULL DEFAULT 0,
    locations_listed       BIGINT NOT NULL DEFAULT 0,
    locations_added        BIGINT NOT NULL DEFAULT 0,
    locations_reactivated  BIGINT NOT NULL DEFAULT 0,
    locations_deregistered BIGINT NOT NULL DEFAULT 0,
    people_listed          BIGINT NOT NULL DEFAULT 0,
    people_added           BIGINT NOT NULL DEFAULT 0,
    people_removed         BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE providers (
    provider_id          TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    sector               TEXT,
    nominated_individual TEXT,
    main_partner         TEXT,
    registered_since     TEXT,
    first_seen_import    BIGINT NOT NULL REFERENCES registry_imports(id),
    last_seen_import     BIGINT NOT NULL REFERENCES registry_imports(id),
    deregistered_at      BIGINT,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE locations (
    location_id       TEXT PRIMARY KEY,
    provider_id       TEXT NOT NULL REFERENCES providers(provider_id),
    name              TEXT NOT NULL,
    also_known_as     TEXT,
    address           TEXT,
    postcode          TEXT,
    phone             TEXT,
    local_authority   TEXT,
    region            TEXT,
    location_type     TEXT,
    registered_since  TEXT,
    first_seen_import BIGINT NOT NULL REFERENCES registry_imports(id),
    last_seen_import  BIGINT NOT NULL REFERENCES registry_imports(id),
    deregistered_at   BIGINT,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX locations_provider ON locations (provider_id, deregistered_at);

-- One row per role held. `location_id` is '' (not NULL) for roles that cover the whole provider, so the
-- unique key holds on both backends; `email` is stored lowercased (EmailAddress::comparison_key).
CREATE TABLE people (
    id          INTEGER PRIMARY KEY,
    person_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    email       TEXT NOT NULL,
    phone       TEXT,
    provider_id TEXT NOT NULL REFERENCES providers(provider_id),
    location_id TEXT NOT NULL DEFAULT '',
    import_id   BIGINT NOT NULL REFERENCES registry_imports(id),
    UNIQUE (person_id, role, provider_id, location_id)
);
CREATE INDEX people_email ON people (email);
CREATE INDEX people_provider ON people (provider_id);
