-- Listing incidents by network (`?cidr=203.0.113.0/24`): `client` is text and
-- not always an address (an API key, a consumer name), so a plain ::inet cast
-- would fail the whole query. This returns NULL instead, and the expression
-- index serves `gatewatch_try_inet(client) <<= $1`.
CREATE FUNCTION gatewatch_try_inet(value text) RETURNS inet
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN value::inet;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;

CREATE INDEX incidents_client_inet_idx ON incidents USING gist (gatewatch_try_inet(client) inet_ops);
