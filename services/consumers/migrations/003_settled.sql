-- One row the consumer's pipeline rewrites with a synchronous commit to make its asynchronous commits durable
-- (services/consumers/store.py settle): a commit flushes the WAL only if its transaction wrote some.
CREATE TABLE settled (
    one boolean     PRIMARY KEY DEFAULT true CHECK (one),
    at  timestamptz NOT NULL
);
