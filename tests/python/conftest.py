"""Shared fixtures of the Python tests.

`moto_server` starts one moto server (AWS emulation, from this venv) for the whole session on a free
loopback port and stops it at the end; `aws_client` makes boto3 clients pointed at it with dummy
credentials in us-east-1. Tests that need it isolate themselves by unique resource names.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import simulator

AWS_REGION = "us-east-1"
MOTO_START_TIMEOUT_SECS = 30


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    # No proxy: a proxy from the environment must not see loopback requests.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, with an error status
    except OSError:
        return False


@pytest.fixture(scope="session")
def moto_server():
    """The endpoint URL of a moto server running for this test session, started as the Rust tests start
    theirs: through tests/emulators/moto_server.py (the reasons are in that file)."""
    script = Path(__file__).resolve().parents[1] / "emulators" / "moto_server.py"
    if not (Path(sys.executable).parent / "moto_server").exists():
        pytest.fail(f"moto's server is missing: install tests/requirements.txt into this venv ({sys.prefix})")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log, pytest.MonkeyPatch.context() as mp:
        for var in ("NO_PROXY", "no_proxy"):
            mp.setenv(var, ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"])))
        for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            mp.delenv(var, raising=False)
        proc = subprocess.Popen(
            [sys.executable, str(script), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + MOTO_START_TIMEOUT_SECS
            while not _answers(f"{url}/moto-api/"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")[-3000:]
                    pytest.fail(f"moto server did not start on {url} (exit {proc.poll()}):\n{output}")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def aws_client(moto_server):
    """`aws_client("sqs")`: a boto3 client for the moto server."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=AWS_REGION,
    )
    config = Config(retries={"max_attempts": 1})

    def make(service: str):
        return session.client(service, endpoint_url=moto_server, config=config)

    return make


@pytest.fixture(scope="module")
def sim():
    """A simulator (small profile, no rate limits) for one test module: its startup info."""
    proc, info = simulator.start()
    try:
        yield info
    finally:
        simulator.stop(proc)
