"""`smartcommunity demo` points its WeCom, DingTalk and SMS channels at its own local inbox and
supervises the receiver like its other parts, unless channels of one's own are configured."""

from __future__ import annotations

from pathlib import Path

from alerts.channels import load_targets
from smartcommunity.services_cli import demo_inbox_settings, demo_parts
from smartcommunity.supervisor import Supervisor
from tests.conftest import make_settings


def test_the_demo_sends_its_notifications_to_its_inbox(tmp_path: Path) -> None:
    s, said = demo_inbox_settings(make_settings(tmp_path / "var"))
    assert s.demo_inbox_port > 0 and f"{s.public_base_url}/inbox" in said
    targets = load_targets(s)
    assert sorted(t.kind for t in targets) == ["dingtalk", "sms", "wecom"]
    assert all((t.url or "").startswith(f"http://127.0.0.1:{s.demo_inbox_port}/") for t in targets)
    parts = demo_parts(s, None)
    assert ("demo-inbox", ["demo-inbox"]) in parts
    # Supervised like the others, and every part is told where the inbox and its channels are.
    sup = Supervisor(s, parts)
    for child in sup.children:
        assert child.env["SC_DEMO_INBOX_PORT"] == str(s.demo_inbox_port)
        assert child.env["SC_ALERTS_CHANNELS_FILE"] == s.alerts_channels_file
    assert [c.argv[-1] for c in sup.children if c.name == "demo-inbox"] == ["demo-inbox"]


def test_own_channels_are_kept_and_no_inbox_is_started(tmp_path: Path) -> None:
    own = tmp_path / "channels.yaml"
    own.write_text("channels:\n  - {id: duty, kind: sms, url: 'http://10.0.0.9/sms'}\n", encoding="utf-8")
    s, said = demo_inbox_settings(make_settings(tmp_path / "var", alerts_channels_file=str(own)))
    assert s.demo_inbox_port == 0 and s.alerts_channels_file == str(own) and "no demo inbox" in said
    assert "demo-inbox" not in [name for name, _ in demo_parts(s, None)]
    up = make_settings(tmp_path / "var")
    assert "demo-inbox" not in [name for name, _ in demo_parts(up, None)]  # SC_DEMO_INBOX_PORT unset
