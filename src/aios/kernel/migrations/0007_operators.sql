-- The console's operators: who may sign in (an argon2 hash of the password set with
-- `aios operator set-password`, never the password), and failed sign-ins per address, so
-- every replica of `aios serve` counts them against the same limit.
-- depends: 0006_gates

CREATE TABLE operators (
    name           text PRIMARY KEY,
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE signin_failures (
    id          bigserial PRIMARY KEY,
    address     text NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signin_failures_address ON signin_failures (address, failed_at);
