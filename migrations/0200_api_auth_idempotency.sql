-- The HTTP API's own tables: bearer tokens and idempotency keys.

-- Bearer tokens. Only the SHA-256 of a token is stored; the token itself is shown
-- once, when it is issued. A revoked token keeps its row (who had which role, and
-- when) until its name is issued again.
CREATE TABLE api_tokens (
    name        text        PRIMARY KEY,
    role        text        NOT NULL CHECK (role IN ('operator', 'supervisor', 'auditor', 'admin')),
    token_hash  bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL,
    revoked_at  timestamptz
);

-- The first answer to each (principal, Idempotency-Key): a replay returns it verbatim
-- and runs nothing. A row without a status is a claim by a request still running.
CREATE TABLE api_idempotency_keys (
    principal     text        NOT NULL,
    key           text        NOT NULL,
    method        text        NOT NULL,
    path          text        NOT NULL,
    -- SHA-256 of method, path and body: a replay must send the same request.
    request_hash  bytea       NOT NULL,
    status        smallint,
    content_type  text,
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (principal, key)
);
CREATE INDEX api_idempotency_keys_created_at ON api_idempotency_keys (created_at);
