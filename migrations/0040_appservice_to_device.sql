-- Application services read the to-device inbox by position (homeserver/appservice/device_data.py:
-- the messages of their users' devices after the consumer 'appservice-to_device:<id>'), not by
-- device as /sync does.
CREATE INDEX to_device_inbox_stream ON to_device_inbox (stream_id);
