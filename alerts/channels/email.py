"""E-mail through an SMTP server (real `smtplib`).

`url`: smtp://host:port (STARTTLS whenever the server offers it; `starttls: required` refuses to
send in clear), or smtps://host:port (TLS from the start). Options: `from`, `username`, `password`.
One message per notification, to every addressee with an e-mail address; a recipient the server
refuses is a failure (the others still get it), retried like any other. A session is kept open
between messages (checked with RSET, renewed after 30 s idle), so a burst pays for TLS once.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

from alerts.channels.base import Channel, DeliveryError, Target
from alerts.message import Message
from alerts.roster import Person

IDLE_S = 30.0  # an open session idle longer than this is closed and a new one opened (servers time out)


class EmailChannel(Channel):
    kind = "email"
    options = frozenset({"from", "username", "password", "starttls", "verify_tls"})
    address_field = "email"
    needs_address = True
    max_bytes = 100_000

    def __init__(self, target: Target, timeout_s: float = 10.0) -> None:
        super().__init__(target, timeout_s)
        u = urlsplit(target.url or "")
        if u.scheme not in ("smtp", "smtps") or not u.hostname:
            raise ValueError(f"channel {target.id}: url must be smtp://host:port or smtps://host:port")
        self.host = u.hostname
        self.port = u.port or (465 if u.scheme == "smtps" else 25)
        self.tls = u.scheme == "smtps"
        opts = target.options
        self.username = opts.get("username") or (unquote(u.username) if u.username else None)
        self.password = opts.get("password") or (unquote(u.password) if u.password else None)
        self.sender = str(opts.get("from") or "smartcommunity@localhost")
        self.starttls = str(opts.get("starttls", "auto"))
        self.verify = bool(opts.get("verify_tls", True))
        self._smtp: smtplib.SMTP | None = None
        self._used = 0.0

    def _ctx(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def compose(self, message: Message, to: list[Person]) -> EmailMessage:
        m = EmailMessage()
        m["Subject"] = f"{message.title} {message.place}".strip()
        m["From"] = self.sender
        m["To"] = ", ".join(formataddr((p.name, p.email or "")) for p in to)
        m["Message-ID"] = make_msgid(domain="smartcommunity")
        m.set_content(message.plain())
        return m

    def _open(self) -> smtplib.SMTP:
        if self.tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=self._ctx())
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        try:
            smtp.ehlo()
            if not self.tls:
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=self._ctx())
                    smtp.ehlo()
                elif self.starttls == "required":
                    raise DeliveryError(f"{self.host}:{self.port} does not offer STARTTLS (required)")
            if self.username:
                smtp.login(self.username, self.password or "")
        except BaseException:
            with contextlib.suppress(Exception):
                smtp.close()
            raise
        return smtp

    def _session(self) -> smtplib.SMTP:
        """The open session if it is still good (RSET answers 250 and it was used lately), else a new one."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None and time.monotonic() - self._used < IDLE_S:
            try:
                if smtp.rset()[0] == 250:
                    return smtp
            except (smtplib.SMTPException, OSError):
                pass
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.close()
        return self._open()

    def send(self, message: Message, people: list[Person], alert: dict[str, Any] | None = None) -> None:
        to = self.addressees(people)
        if not to:
            raise DeliveryError("nobody to write to: no e-mail address")
        msg = self.compose(message, to)
        smtp: smtplib.SMTP | None = None
        try:
            smtp = self._session()
            refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=[p.email or "" for p in to])
            self._smtp, self._used = smtp, time.monotonic()  # kept for the next message (a burst: one session)
        except smtplib.SMTPRecipientsRefused as exc:
            self._smtp, self._used = smtp, time.monotonic()
            raise DeliveryError("refused: " + "; ".join(f"{a} {c} {r.decode(errors='replace')}"
                                                       for a, (c, r) in exc.recipients.items())) from None
        except smtplib.SMTPResponseException as exc:
            self._drop(smtp)
            raise DeliveryError(f"SMTP {exc.smtp_code} {exc.smtp_error.decode(errors='replace')}") from None
        except (smtplib.SMTPException, OSError) as exc:
            self._drop(smtp)
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if refused:
            raise DeliveryError("sent to the others, refused: " + "; ".join(
                f"{a} {c} {r.decode(errors='replace')}" for a, (c, r) in refused.items()))

    def _drop(self, smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.quit()

# The channel kind this module adds (alerts/channels/config.py finds it here).
CHANNEL = EmailChannel
