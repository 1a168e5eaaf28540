"""Sending e-mail over SMTP (validation links). smtplib is blocking, so each message is sent
from a worker thread; validation mails are rare enough that a connection per message is fine."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from homeserver.config import EmailConfig

TIMEOUT_S = 20.0


class MailError(Exception):
    pass


class Mailer:
    def __init__(self, config: EmailConfig) -> None:
        self._config = config

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    def _message(self, to: str, subject: str, text: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._config.notif_from
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=self._config.notif_from.rpartition("@")[2])
        msg.set_content(text)
        return msg

    def _send_blocking(self, msg: EmailMessage) -> None:
        c = self._config
        smtp = smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=TIMEOUT_S)
        try:
            if c.starttls:
                smtp.starttls()
            if c.smtp_user:
                smtp.login(c.smtp_user, c.smtp_password)
            smtp.send_message(msg)
        finally:
            # The message is accepted once DATA is: a server that answers QUIT oddly (or not
            # at all) has still got it, so QUIT's answer is not checked.
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    async def send(self, to: str, subject: str, text: str) -> None:
        """Send one plain-text message; MailError if the SMTP server refuses or is down."""
        if not self.enabled:
            raise MailError("e-mail is not configured")
        try:
            await asyncio.to_thread(self._send_blocking, self._message(to, subject, text))
        except (smtplib.SMTPException, OSError) as e:
            raise MailError(str(e) or type(e).__name__) from None
