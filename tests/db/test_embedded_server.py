"""The embedded server: a private socket whatever the home's length, no permission changes, a per-user home."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from customer_ratings import Settings, open_database
from customer_ratings.db.server import SERVICE_USER

from ._helpers import clean_env, cli, said


def _modes(paths: list[Path]) -> dict[Path, tuple[int, int]]:
    return {p: (stat.S_IMODE(p.stat().st_mode), p.stat().st_uid) for p in paths}


def _server_uid() -> int:
    if os.geteuid() != 0:
        return os.geteuid()
    import pwd

    return pwd.getpwnam(SERVICE_USER).pw_uid


def test_long_home_gets_a_private_socket_and_no_parent_changes_mode(tmp_path: Path) -> None:
    deep = tmp_path / ("h" * 60) / ("o" * 60)
    deep.mkdir(parents=True)
    deep.chmod(0o700)
    home = deep / "home"
    assert len(str(home / "pgdata" / ".s.PGSQL.5432")) > 107, "too short to need another socket directory"
    parents = [deep, *deep.parents]
    before = _modes(parents)
    with open_database(Settings(home=home)) as db:
        socket_dir = Path(db.connection().info.host)
        assert socket_dir.is_absolute() and len(str(socket_dir / ".s.PGSQL.5432")) <= 107
        info = socket_dir.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
        assert info.st_uid == _server_uid()
        assert _modes(parents) == before, "a parent's mode changed while the server runs"
        if os.geteuid() == 0:  # another user cannot even reach the socket
            probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
                     "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    print('refused')\n"
                     "else:\n    print('connected')\n")
            python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
            done = subprocess.run([python, "-I", "-c", probe, str(socket_dir / ".s.PGSQL.5432")],
                                  user="nobody", capture_output=True, text=True, timeout=60, cwd="/")
            assert done.stdout.strip() == "refused", done.stdout + done.stderr
    assert _modes(parents) == before, "a parent's mode changed"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700, "the home the tool creates is private"
    assert not socket_dir.exists(), "the private socket directory is removed with the server"


def test_default_home_is_per_user_and_said_once(tmp_path: Path) -> None:
    user_home, elsewhere = tmp_path / "user", tmp_path / "elsewhere"
    user_home.mkdir()
    elsewhere.mkdir()
    env = clean_env(tmp_path, HOME=str(user_home))
    del env["CUSTOMER_RATINGS_HOME"], env["XDG_DATA_HOME"]
    done = cli(["init"], env, cwd=elsewhere)
    assert done.returncode == 0, said(done)
    lines = [line for line in done.stderr.splitlines() if line.startswith("database: ")]
    assert len(lines) == 1 and re.fullmatch(r"database: embedded PostgreSQL \d+ at ~/.local/share/customer-ratings",
                                            lines[0]), said(done)
    assert (user_home / ".local/share/customer-ratings/pgdata/PG_VERSION").exists()
    assert list(elsewhere.iterdir()) == [], "nothing is written in the working folder"

    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    done = cli(["init"], env, cwd=elsewhere)
    assert done.returncode == 0, said(done)
    lines = [line for line in done.stderr.splitlines() if line.startswith("database: ")]
    assert lines == [f"database: embedded PostgreSQL 18 at {tmp_path / 'xdg' / 'customer-ratings'}"], said(done)


def test_a_home_of_an_earlier_version_in_the_current_folder_is_pointed_out(tmp_path: Path) -> None:
    old = tmp_path / "project"
    (old / ".customer-ratings" / "pgdata").mkdir(parents=True)
    (old / ".customer-ratings" / "pgdata" / "PG_VERSION").write_text("18\n")
    done = cli(["init"], clean_env(tmp_path), cwd=old)
    assert done.returncode == 0, said(done)
    assert f"CUSTOMER_RATINGS_HOME={old / '.customer-ratings'} to keep using it" in done.stderr, said(done)


def test_as_a_regular_user_everything_is_that_users(tmp_path: Path) -> None:
    """Run as root, the suite also runs the command as ``nobody`` (run as another user, the tests above are
    that case already): the home, the data and the server are that user's, and the server stops."""
    if os.geteuid() != 0 or not Path("/usr/bin/python3").exists():
        test_default_home_is_per_user_and_said_once(tmp_path)
        return
    import pwd

    nobody = pwd.getpwnam("nobody")
    user_home = Path(tempfile.mkdtemp(prefix="customer-ratings-nobody-"))  # pytest's folders are root's (0700)
    os.chown(user_home, nobody.pw_uid, nobody.pw_gid)
    try:
        _as_nobody(user_home, nobody)
    finally:
        shutil.rmtree(user_home, ignore_errors=True)


def _as_nobody(user_home: Path, nobody: Any) -> None:
    site = next(p for p in sys.path if p.endswith("site-packages"))
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(user_home), "PYTHONPATH": f"{site}:{src}", "TERM": "dumb"}
    done = subprocess.run(["/usr/bin/python3", "-m", "customer_ratings", "init"], env=env, capture_output=True,
                          text=True, timeout=180, cwd=str(user_home), user=nobody.pw_uid, group=nobody.pw_gid,
                          extra_groups=[], check=False)
    assert done.returncode == 0, said(done)
    assert "database: embedded PostgreSQL 18 at ~/.local/share/customer-ratings" in done.stderr, said(done)
    home = user_home / ".local/share/customer-ratings"
    for path in (home, home / "pgdata", home / "pgdata" / "PG_VERSION", home / ".server-users.json"):
        assert path.stat().st_uid == nobody.pw_uid, path
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert not (home / "pgdata" / "postmaster.pid").exists(), "the server is stopped"


def test_a_stale_postmaster_pid_naming_another_process_is_not_taken_for_the_server(tmp_path: Path) -> None:
    """After a reboot postmaster.pid may name an unrelated live process: never signalled, never joined."""
    env = clean_env(tmp_path)
    assert cli(["init"], env).returncode == 0
    pgdata = tmp_path / "home" / "pgdata"
    other = subprocess.Popen(["sleep", "120"])
    try:
        (pgdata / "postmaster.pid").write_text(
            f"{other.pid}\n{pgdata}\n1700000000\n5432\n/tmp/nowhere\n\n  1 2\nready   \n")
        done = cli(["init"], env)
        assert done.returncode == 0, said(done)
        assert other.poll() is None, "an unrelated process was sent the server's stop signals"
        assert not (pgdata / "postmaster.pid").exists(), "the server started and stopped"
    finally:
        other.kill()
        other.wait(timeout=30)
