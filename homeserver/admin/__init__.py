"""Operators' services (docs/admin.md): the work behind the admin API in admin_api/ and the
`parley admin` command line."""
