"""The server-server API at the HTTP edge: routes, request authentication, the outbound client.

Domain logic (keys, joins, transactions, the sender) lives in `homeserver/federation/`; this
package only speaks HTTP and hands over to it."""
