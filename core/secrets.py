"""Secrets and private files: 0600 files under `SC_DATA_DIR/secrets` (0700), or the environment.

Layout: `<secrets>/mqtt/<account>` and `<secrets>/influx/<account>` each hold one password. A
password may also come from the environment as `SC_SECRET_MQTT_<ACCOUNT>` /
`SC_SECRET_INFLUX_<ACCOUNT>` (account upper-cased, `.` and `-` as `_`), which wins over the file.
Nothing here ever logs a secret; errors name the file, never its content.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from pathlib import Path

from core.settings import Settings

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


class SecretError(RuntimeError):
    pass


def new_password() -> str:
    """256 random bits, URL-safe (fits a URL's user-info without quoting)."""
    return secrets.token_urlsafe(32)


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)
    return path


def make_private(path: Path) -> None:
    """chmod 0600 a file that holds personal data or secrets (no-op when absent)."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, PRIVATE_FILE)


def private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 if missing, and make it 0600 if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE))
    os.chmod(path, PRIVATE_FILE)
    return path


def installation_key(path: Path, nbytes: int = 32) -> bytes:
    """A random key made once per installation (0600), e.g. for signing cookies or links.

    Written to a temporary file and linked into place, so a process racing another never reads
    a half-written key: link() fails if the other won, and then theirs is read."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        try:
            os.write(fd, secrets.token_bytes(nbytes))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes()


def private_open(path: Path, mode: str = "a", encoding: str | None = "utf-8"):  # type: ignore[no-untyped-def]
    """Open a file that is created 0600 (and forced to 0600 if it already existed wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)


def write_private(path: Path, data: str | bytes) -> None:
    """Atomically replace `path` with `data`, 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _env_name(service: str, account: str) -> str:
    return f"SC_SECRET_{service.upper()}_" + re.sub(r"[^A-Za-z0-9]", "_", account).upper()


def secret_file(settings: Settings, service: str, account: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", account):
        raise SecretError(f"not an account name: {account!r}")
    return settings.secrets_path / service / account


def read_secret(settings: Settings, service: str, account: str) -> str:
    """The password of `account` for `service` ("mqtt" or "influx"), from env or its 0600 file."""
    env = os.environ.get(_env_name(service, account))
    if env:
        return env
    path = secret_file(settings, service, account)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SecretError(f"no password for {service} account {account}: {path} does not exist "
                          f"(run `smartcommunity devices provision`, or set {_env_name(service, account)})"
                          ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}): chmod 600 it")
    return path.read_text().strip()


def ensure_secret(settings: Settings, service: str, account: str) -> str:
    """The account's password, making a new one (0600) the first time."""
    path = secret_file(settings, service, account)
    if not path.exists() and not os.environ.get(_env_name(service, account)):
        private_dir(settings.secrets_path)
        private_dir(path.parent)
        write_private(path, new_password() + "\n")
    return read_secret(settings, service, account)


def tighten_tree(root: Path) -> int:
    """Take group/other access off everything under `root` (files left wider by older versions:
    outbox.jsonl, alerts.sqlite, deadletter.sqlite, ...). Returns how many entries changed."""
    changed = 0
    if not root.is_dir():
        return 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
                continue
            os.chmod(p, stat.S_IMODE(st.st_mode) & ~0o077)
            changed += 1
    return changed
