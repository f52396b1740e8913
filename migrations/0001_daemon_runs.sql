-- Each start of kircd against this database: when, which version, which
-- process. `kircd doctor` and support questions start here.
CREATE TABLE daemon_runs (
    id          BIGSERIAL PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    version     TEXT        NOT NULL,
    pid         INTEGER     NOT NULL,
    hostname    TEXT        NOT NULL
);
