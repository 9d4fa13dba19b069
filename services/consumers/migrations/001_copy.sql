-- A merchant's copy: only the listings it applies, only the codes it checks, no names, no raw ids.
-- A row whose id_hash is NULL is a version marker of a listing revoked or no longer relevant:
-- it keeps the version so that an older record can never bring the listing back.
CREATE TABLE listings (
    listing_id     text PRIMARY KEY,
    version        int  NOT NULL CHECK (version >= 1),
    list           text,
    authority      text,
    subject_kind   text,
    id_hash        text,
    id_masked      text,
    restrictions   text[],
    scope          text,
    case_number    text,
    effective_from timestamptz,
    expires_at     timestamptz,
    applied_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((id_hash IS NULL) = (restrictions IS NULL))
);
CREATE INDEX listings_by_subject ON listings (id_hash, subject_kind) WHERE id_hash IS NOT NULL;
