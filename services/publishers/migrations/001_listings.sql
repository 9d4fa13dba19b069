-- An authority's own register: the listings it decided, their history, and the outbox to Kafka.
CREATE SEQUENCE listing_number;

CREATE TABLE listings (
    listing_id   text PRIMARY KEY,
    authority    text NOT NULL,
    list         text NOT NULL,
    version      int  NOT NULL CHECK (version >= 1),
    status       text NOT NULL CHECK (status IN ('active', 'revoked')),
    subject_kind text NOT NULL,
    subject_id   text NOT NULL,      -- the authority's own record: real identifiers live here only
    subject_name text NOT NULL,
    extensions   int  NOT NULL DEFAULT 0,
    state        jsonb NOT NULL,     -- the listing exactly as published (CONTRACT section 4)
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX listings_by_status ON listings (status, listing_id);
CREATE INDEX listings_by_subject ON listings (subject_kind, subject_id);

CREATE TABLE listing_history (
    listing_id  text NOT NULL REFERENCES listings (listing_id),
    version     int  NOT NULL,
    event_id    uuid NOT NULL UNIQUE,
    event_type  text NOT NULL,
    actor       text NOT NULL,
    at          timestamptz NOT NULL,
    change      jsonb NOT NULL,
    legal_basis jsonb NOT NULL,
    PRIMARY KEY (listing_id, version)
);

CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text  NOT NULL,
    key        text  NOT NULL,
    value      bytea NOT NULL,
    authority  text  NOT NULL,
    event_type text  NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;

-- History is append-only: no row of it is ever changed or removed.
CREATE FUNCTION refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'listing_history is append-only';
END $$;
CREATE TRIGGER listing_history_append_only BEFORE UPDATE OR DELETE ON listing_history
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
