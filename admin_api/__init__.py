"""The operators' HTTP API: Synapse's `/_synapse/admin/...` endpoints (same paths, JSON and
paging, so synapse-admin, moderation bots and scripts work unchanged) and the spec's
`/_matrix/client/v1/admin/...` endpoints.

A package of its own beside client_api/ rather than inside it: client_api/ is the client-server
spec, one module per spec section, while this is another contract (Synapse's admin API) with
its own rule for who may call it (server admins only, 403 M_FORBIDDEN for anyone else, checked
in `admin_api.context.require_admin`). The handlers only parse, validate and shape; the work
is done by the services in homeserver/admin/. docs/admin.md lists what is served.
"""
