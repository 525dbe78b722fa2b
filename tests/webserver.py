"""A real `dedupe review --web` server in a subprocess, and a library of photos to review, for the web tests."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from dedupe import Store, scan
from tests.conftest import REPO, draw_photo, save


def make_library(tmp_path: Path) -> tuple[Path, Path]:
    """Photos with 3 exact groups (an original and its byte copy in backup/), one near group (a photo and a
    half-size PNG of it) and one exact group of a photo turned by EXIF; scanned into a store. Returns both."""
    root = tmp_path / "photos"
    for i in range(3):
        save(draw_photo(i), root / f"a{i}.jpg", quality=90)
        (root / "backup").mkdir(exist_ok=True)
        (root / "backup" / f"a{i}.jpg").write_bytes((root / f"a{i}.jpg").read_bytes())
    save(draw_photo(7), root / "b.jpg", quality=90)
    save(draw_photo(7).resize((600, 450)), root / "exports" / "b-small.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: a portrait picture stored as landscape pixels
    save(draw_photo(9), root / "turned.jpg", quality=90, exif=exif.tobytes())
    (root / "backup" / "turned.jpg").write_bytes((root / "turned.jpg").read_bytes())
    db = tmp_path / "store.sqlite"
    with Store.open(db) as store:
        scan([root], store)
    return root, db


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below root (symlinks as their target text) by relative path: the tree, byte for byte."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = b"-> " + str(p.readlink()).encode()
        elif p.is_file():
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


class ReviewServer:
    """`python -m dedupe review ROOT --db DB --web --no-browser` running until stop()."""

    def __init__(self, root: Path, db: Path, xdg: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_DATA_HOME": str(xdg)}
        command = [
            sys.executable,
            "-m",
            "dedupe",
            "review",
            str(root),
            "--db",
            str(db),
            "--web",
            "--no-browser",
            *extra,
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout

        def read() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        try:
            self.first_line = lines.get(timeout=60)
        except queue.Empty:
            self.process.kill()
            raise AssertionError(f"no address printed; stderr: {self.process.communicate()[1]}") from None
        assert self.first_line.startswith("Review at http://"), self.first_line
        self.url = self.first_line.split(" ", 2)[2].strip()
        parts = urlsplit(self.url)
        self.host = parts.netloc
        self.port = parts.port or 80
        self.base = f"http://{parts.netloc}"
        self.token = parts.query.removeprefix("token=")

    def stop(self) -> tuple[int, str]:
        """SIGTERM, as a service manager stops it; returns the exit status and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        cookie: str | None = "",
        host: str | None = None,
        origin: str | None = "",
        token_header: str | None = "",
    ) -> tuple[int, dict[str, str], bytes]:
        """One raw HTTP request; the defaults are what the page itself sends (cookie, origin, token header).
        None leaves a header out; any other value replaces the page's."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Host": self.host if host is None else host}
        if cookie is not None:
            headers["Cookie"] = f"dedupe_token={cookie or self.token}"
        payload = None
        if method == "POST":
            if origin is not None:
                headers["Origin"] = origin or self.base
            if token_header is not None:
                headers["X-Dedupe-Token"] = token_header or self.token
            payload = json.dumps(body if body is not None else {}).encode()
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(len(payload))
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders(payload)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, _, data = self.request(method, path, body)
        assert status == 200, (status, data)
        return json.loads(data)
