"""Third-party identifiers and what they talk to outside the homeserver: identity servers
(lookups, bindings, third-party invites), the homeserver's own e-mail validation, reCAPTCHA and
single sign-on through CAS."""
