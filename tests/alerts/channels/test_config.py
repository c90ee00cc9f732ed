"""The channels file: targets parsed, files with errors refused with file, line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.channels.config import parse_channels
from alerts.configfile import ConfigError

GOOD = """\
channels:
  - id: street-wecom
    kind: wecom
    url: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k
    communities: [yanling, yanhu]
    severities: [red, orange]
  - id: street-ding
    kind: dingtalk
    url: https://oapi.dingtalk.com/robot/send?access_token=t
    secret: SECabc
    rate: {count: 10, per_s: 60}
  - id: mail
    kind: email
    url: smtp://mail.example.cn:587
    from: alarm@example.cn
  - id: gateway
    kind: sms
    url: http://10.0.0.9/sms
"""


def test_good_file(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(GOOD, encoding="utf-8")
    t = {x.id: x for x in parse_channels(p)}
    assert t["street-wecom"].communities == {"yanling", "yanhu"} and t["street-wecom"].severities == {"red", "orange"}
    assert t["street-ding"].secret == "SECabc" and t["street-ding"].rate_count == 10
    assert t["mail"].options == {"from": "alarm@example.cn"}


@pytest.mark.parametrize("old,new,line,reason", [
    ("kind: wecom", "kind: weixin", 3, "unknown kind 'weixin'"),
    ("severities: [red, orange]", "severities: [red, purple]", 6, "unknown severities purple"),
    ("communities: [yanling, yanhu]", "communities: [yanling, lakeside]", 5, "unknown communities lakeside"),
    ("url: smtp://mail.example.cn:587", "url: mail.example.cn", 14, "`url` must be a URL"),
    ("url: smtp://mail.example.cn:587", "url: http://mail.example.cn", 14, "smtp://host:port"),
    ("id: gateway", "id: mail", 16, "id 'mail' is used twice"),
    ("rate: {count: 10, per_s: 60}", "rate: {count: ten}", 11, "rate is {count"),
    ("secret: SECabc", "secrte: SECabc", 10, "unknown field 'secrte'"),
    ("    from: alarm@example.cn", "    from: alarm@example.cn\n  oops", 16, "not valid YAML"),
])
def test_errors_are_refused_with_file_line_and_reason(tmp_path: Path, old: str, new: str, line: int,
                                                       reason: str) -> None:
    assert old in GOOD
    p = tmp_path / "c.yaml"
    p.write_text(GOOD.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        parse_channels(p)
    assert f"{p}:{line}: " in str(exc.value) and reason in str(exc.value), str(exc.value)
