"""Federation's domain logic beside the room engine: server keys, the remote membership
handshake, inbound transactions and the outbound sender. No HTTP here: the outbound requests go
through the small protocols each module declares, which `federation/client.py` implements."""
