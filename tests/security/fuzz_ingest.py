#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris / libFuzzer) of what ingest does with a device's message:
topic parsing and the payload validator, then the line-protocol encoder, checked by fuzzlib.

    .venv/bin/python tests/security/fuzz_ingest.py CORPUS_DIR [-runs=N] [-max_len=2048]

An input is `topic \\n payload` (the seed format of tests/security/seeds/, which is a good start
corpus: copy it, libFuzzer adds what it finds to the first directory). Every 7th input also
becomes a registry compound_id + event detail, to fuzz the tag and string escaping. A crash is
any exception but the validator's `Rejected`, or a point the contract does not allow.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import atheris

with atheris.instrument_imports():
    from core.contract import Device
    from core.lineprotocol import split_lines, to_line
    from core.validation import Event, Telemetry
    from tests.security.fuzzlib import NOW_MS, check_line, check_message, fuzz_registry

REG = fuzz_registry()


def one_input(data: bytes) -> None:
    topic_b, _, payload = data.partition(b"\n")
    topic = topic_b.decode("utf-8", "replace")
    check_message(topic, payload, REG)
    if len(data) % 7 == 0:
        text = data.decode("utf-8", "replace")
        d = Device("C-000009", "camera", "yanhu", text[:40], 10, 0, 0)
        recs = [Telemetry(d, NOW_MS, None, {"fps": 1.0}), Event(d, NOW_MS, "tamper", text)]
        lines = [to_line(r) for r in recs]
        for r, line in zip(recs, lines, strict=True):
            check_line(r, line, NOW_MS)
        assert split_lines("\n".join(lines)) == lines


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
