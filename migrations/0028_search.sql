-- Server-side search (POST /search, homeserver/search/): PostgreSQL full-text search over the
-- searchable text of room events, kept as an expression index rather than a column so that
-- writing an event stays one statement. The text is the spec's keys: content.body of
-- m.room.message, content.name of m.room.name, content.topic of m.room.topic. Encrypted events
-- have none of these and are not searchable, as on every homeserver. The text search
-- configuration is 'english' (stemming, stop words): a query must use the same expression,
-- homeserver/search/store.py does.
--
-- The function never raises (an event whose JSON jsonb cannot read, e.g. one with a \u0000
-- escape from another server, is simply not searchable): an error here would fail the
-- event's INSERT.
CREATE FUNCTION parley_search_text(etype TEXT, ejson TEXT) RETURNS TEXT
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF etype = 'm.room.message' THEN
        RETURN ejson::jsonb -> 'content' ->> 'body';
    ELSIF etype = 'm.room.name' THEN
        RETURN ejson::jsonb -> 'content' ->> 'name';
    ELSIF etype = 'm.room.topic' THEN
        RETURN ejson::jsonb -> 'content' ->> 'topic';
    END IF;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

CREATE INDEX events_search ON events
    USING GIN (to_tsvector('english'::regconfig, COALESCE(parley_search_text(type, json), '')))
    WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic');
