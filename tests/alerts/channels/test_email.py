"""E-mail through a real local SMTP server (aiosmtpd), STARTTLS when offered."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.channels.base import DeliveryError, Target
from alerts.channels.email import EmailChannel
from alerts.roster import Person
from tests.alerts.channels.receivers import MailServer, smtp_server

ZHAO = Person(name="赵六", email="zhao@example.cn")
NOBODY = Person(name="查无此人", email="nobody@example.cn")


def channel(port: int, **opts: object) -> EmailChannel:
    return EmailChannel(Target(id="m", kind="email", url=f"smtp://127.0.0.1:{port}",
                               options={"from": "alarm@checheng.example.cn", "verify_tls": False, **opts}))


def test_mail_over_starttls_names_the_place(mailserver: MailServer, message) -> None:  # type: ignore[no-untyped-def]
    channel(mailserver.port).send(message, [ZHAO, Person(name="只有电话", phone="0719-1")])
    [mail] = mailserver.wait_for(1)
    assert mail.tls, "STARTTLS was offered and not used"
    assert mail.rcpts == ["zhao@example.cn"] and mail.sender == "alarm@checheng.example.cn"
    assert str(mail.message["Subject"]).startswith("【一级·红色预警】燃气告警")
    assert "岩岭社区 半山尚小区 1栋 管井" in str(mail.message["Subject"])
    body = mail.message.get_content()
    assert "当前值 31.25 %LEL，阈值 25 %LEL" in body
    assert "详情: http://dash.example:8050/alerts/a-0123456789abcdef" in body
    assert "赵六" in str(mail.message["To"])


def test_plain_server_without_starttls(tmp_path: Path, message) -> None:  # type: ignore[no-untyped-def]
    gen = smtp_server(tmp_path, starttls=False)
    box = next(gen)
    try:
        channel(box.port).send(message, [ZHAO])
        assert not box.wait_for(1)[0].tls
        with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
            channel(box.port, starttls="required").send(message, [ZHAO])
    finally:
        gen.close()


def test_a_refused_recipient_is_a_failure_the_others_get_it(mailserver: MailServer, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DeliveryError, match=r"nobody@example\.cn 550"):
        channel(mailserver.port).send(message, [ZHAO, NOBODY])
    assert mailserver.wait_for(1)[0].rcpts == ["zhao@example.cn"]


def test_all_recipients_refused(mailserver: MailServer, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DeliveryError, match=r"refused: nobody@example\.cn 550"):
        channel(mailserver.port).send(message, [NOBODY])
    assert mailserver.mails == []


def test_no_server_is_a_failure_not_a_crash(message) -> None:  # type: ignore[no-untyped-def]
    from tests.alerts.channels.receivers import dead_url

    port = int(dead_url().split(":")[2].split("/")[0])
    with pytest.raises(DeliveryError, match="ConnectionRefused"):
        channel(port).send(message, [ZHAO])



def test_a_burst_shares_one_session_and_a_dropped_one_is_renewed(tmp_path: Path, message) -> None:  # type: ignore[no-untyped-def]
    gen = smtp_server(tmp_path, starttls=True)
    box = next(gen)
    ch = channel(box.port)
    try:
        ch.send(message, [ZHAO])
        ch.send(message, [ZHAO])
        a, b = box.wait_for(2)
        assert a.session == b.session and a.tls and b.tls
        assert ch._smtp is not None and ch._smtp.sock is not None
        ch._smtp.sock.shutdown(2)  # the connection drops under the open session (server restart, NAT timeout)
        ch.send(message, [ZHAO])
        assert box.wait_for(3)[2].session != a.session
    finally:
        ch.close()
        gen.close()
