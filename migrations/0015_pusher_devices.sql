-- The device (session) that set each pusher last: when that device goes (logout, device
-- deletion, a password change that logs the other devices out), its pushers go with it, in the
-- same transaction, so a phone whose session was ended is not pushed to any more (as the
-- reference server deletes pushers by access token; SyTest "Pushers created with a different
-- access token are deleted on password change").
--
-- A table of its own rather than a column of `pushers`, which a later migration (0021)
-- creates: the device's deletion cascades to this row, and the trigger below deletes the
-- pusher (plpgsql resolves `pushers` when it runs, not here). device_id is NULL for a pusher
-- last set by a session without a device (an application service): it never cascades. A row
-- may outlive its pusher (deleted by the gateway's rejection or by another user's pushkey);
-- setting the pusher again overwrites it.
CREATE TABLE pusher_devices (
    user_id   TEXT NOT NULL,
    app_id    TEXT NOT NULL,
    pushkey   TEXT NOT NULL,
    device_id TEXT,
    PRIMARY KEY (user_id, app_id, pushkey),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX pusher_devices_device ON pusher_devices (user_id, device_id)
    WHERE device_id IS NOT NULL;

CREATE FUNCTION pusher_device_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pushers
     WHERE user_id = OLD.user_id AND app_id = OLD.app_id AND pushkey = OLD.pushkey;
    RETURN OLD;
END $$;
CREATE TRIGGER pusher_device_deleted AFTER DELETE ON pusher_devices
    FOR EACH ROW EXECUTE FUNCTION pusher_device_deleted();
