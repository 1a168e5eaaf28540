"""reCAPTCHA verification for the m.login.recaptcha registration stage: the client's response
is posted (form-encoded, with the private key) to the configured siteverify URL."""

from __future__ import annotations

from homeserver.config import RecaptchaConfig
from homeserver.identity.http import ExternalError, ExternalHttp


class Recaptcha:
    def __init__(self, config: RecaptchaConfig, http: ExternalHttp) -> None:
        self.config = config
        self._http = http

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    async def verify(self, response: object, remote_ip: str | None) -> bool:
        """Whether the siteverify service accepts the client's captcha response; False when
        it cannot be asked (the stage then stays incomplete)."""
        if not self.enabled or not isinstance(response, str) or not response:
            return False
        form = {"secret": self.config.private_key, "response": response}
        if remote_ip:
            form["remoteip"] = remote_ip
        try:
            reply = await self._http.request("POST", self.config.siteverify_url, data=form)
        except ExternalError:
            return False
        body = reply.json()
        return reply.status == 200 and isinstance(body, dict) and body.get("success") is True
