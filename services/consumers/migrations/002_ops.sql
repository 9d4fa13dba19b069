-- Every dead letter re-submitted by `blacklist-sync ops dlq redrive`: which DLQ record, who, when, and
-- what came of it. A letter is redriven once; if it fails again it is a new letter in the DLQ.
CREATE TABLE dlq_redrives (
    id            bigserial PRIMARY KEY,
    dlq_partition int         NOT NULL,
    dlq_offset    bigint      NOT NULL,
    letter_at     timestamptz NOT NULL,  -- the letter's Kafka timestamp: tells a recreated DLQ topic's offsets apart
    source        text        NOT NULL,  -- x-dlq-source: topic/partition/offset of the original record
    event_id      text,
    listing_id    text,
    outcome       text        NOT NULL CHECK (outcome IN ('applied', 'no_op', 'dead_lettered')),
    reason        text,                  -- the DLQ reason when it was dead-lettered again
    redriven_by   text        NOT NULL,
    redriven_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dlq_partition, dlq_offset, letter_at)
);
