"""The identity parts built together (called from homeserver/app.py, the composition root)."""

from __future__ import annotations

from dataclasses import dataclass

from federation.tls import client_context
from homeserver.config import Config
from homeserver.identity.captcha import Recaptcha
from homeserver.identity.client import IdentityClient
from homeserver.identity.http import ExternalHttp
from homeserver.identity.invites import ThirdPartyInvites
from homeserver.identity.mailer import Mailer
from homeserver.identity.sso import SsoService
from homeserver.identity.store import ThreepidStore
from homeserver.identity.threepids import ThreepidService
from homeserver.outbound import OutboundPolicy, parse_ranges
from homeserver.rooms.service import RoomService
from homeserver.signing import ServerSigningKey
from homeserver.storage.database import Database
from homeserver.users.accounts import AccountService
from homeserver.users.profiles import ProfileService


@dataclass(slots=True)
class Identity:
    http: ExternalHttp
    threepids: ThreepidService
    invites: ThirdPartyInvites
    sso: SsoService
    recaptcha: Recaptcha


def build_identity(config: Config, db: Database, key: ServerSigningKey,
                   accounts: AccountService, profiles: ProfileService,
                   rooms: RoomService) -> Identity:
    tls = client_context(config.federation_ca_file)
    if config.identity_ca_file is not None:
        tls.load_verify_locations(cafile=str(config.identity_ca_file))
    http = ExternalHttp(OutboundPolicy(parse_ranges(config.outbound_allow),
                                       parse_ranges(config.outbound_deny)), tls)
    store = ThreepidStore()
    identity = IdentityClient(http, key)
    threepids = ThreepidService(db, store, Mailer(config.email), identity, config.base_url)
    accounts.on_deactivate.append(threepids.forget_user)
    return Identity(
        http=http, threepids=threepids,
        invites=ThirdPartyInvites(config.server_name, rooms, profiles, identity),
        sso=SsoService(db, store, accounts, config.cas, config.base_url, http),
        recaptcha=Recaptcha(config.recaptcha, http))
