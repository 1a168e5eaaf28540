-- Guest accounts (spec "Guest access"; homeserver/users/accounts.py): their localparts are
-- numbers, as the reference server gives them, taken from this sequence. Numeric localparts
-- are refused to ordinary registration, so the two never meet (a clash is retried anyway).
CREATE SEQUENCE guest_localpart_seq START 1;
