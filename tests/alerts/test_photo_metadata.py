"""Field photos are kept without metadata in every accepted format (JPEG, PNG, WebP): no EXIF, so no
GPS position; turned upright first as the EXIF orientation said."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from alerts.dispatch import check_photo, clean_photo

GPS_IFD = 0x8825


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_and_gps_are_gone_and_orientation_applied(fmt: str) -> None:
    im = Image.new("RGB", (80, 40), (0, 0, 230))
    im.paste((230, 0, 0), (0, 0, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 8  # shown rotated 90° counter-clockwise
    exif[0x010F] = "TestPhone"
    exif[GPS_IFD] = {1: "N", 2: (32.0, 39.0, 0.0), 3: "E", 4: (110.0, 47.0, 0.0)}
    buf = io.BytesIO()
    im.save(buf, fmt, exif=exif)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as before:
        assert before.getexif().get_ifd(GPS_IFD), "premise: the GPS is in the upload"
    kind = check_photo(data, 10 * 1024 * 1024)
    out = clean_photo(data, kind)
    assert b"TestPhone" not in out and b"Exif" not in out
    with Image.open(io.BytesIO(out)) as after:
        assert after.format == fmt and not after.getexif()
        assert after.size == (40, 80)
        # orientation 8: the left (red) half ends at the bottom
        px = after.convert("RGB")
        assert px.getpixel((20, 70))[0] > 150 and px.getpixel((20, 10))[2] > 150
