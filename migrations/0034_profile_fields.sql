-- Profile fields beyond displayname and avatar_url (spec v1.16, MSC4133; homeserver/users/
-- profile_fields.py): m.tz and namespaced custom keys, any JSON value, as one object.
ALTER TABLE profiles ADD COLUMN fields JSONB NOT NULL DEFAULT '{}'::jsonb;
