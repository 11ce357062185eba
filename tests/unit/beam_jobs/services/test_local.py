"""Local services: an exited child is reaped at once, not waited on as a zombie; the broker's
secured listeners are configured only when asked for."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from beam_jobs.services.local import KafkaBroker, exited
from tests.tls import make_ca_and_broker_cert


def test_an_exited_child_is_gone_at_once_and_a_live_process_is_not() -> None:
    child = subprocess.Popen(["sleep", "60"])
    assert not exited(child.pid)
    os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while not exited(child.pid):  # a zombie until reaped: signal 0 alone would still reach it
        assert time.monotonic() < deadline, "the exited child was never seen as gone"
        time.sleep(0.05)
    assert not exited(os.getpid())  # not our child, and alive


def test_the_sasl_ssl_listener_is_configured_only_when_asked(tmp_path: Path) -> None:
    files = make_ca_and_broker_cert(tmp_path)
    sasl_only = KafkaBroker(
        tmp_path, port=1, controller_port=2, sasl_port=3, sasl_users=(("u", "p"),)
    )
    assert not [line for line in sasl_only._listener_lines() if "SSL" in line]
    broker = replace(sasl_only, ssl_port=4, ssl_certificate=files.certificate, ssl_key=files.key)
    props = dict(line.split("=", 1) for line in broker._listener_lines())
    assert props["advertised.listeners"].endswith(",SASL_SSL://127.0.0.1:4")
    assert props["listener.security.protocol.map"].endswith(",SASL_SSL:SASL_SSL")
    assert 'user_u="p"' in props["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    # the PEM on one line, which Java's properties reader splits at each \n again
    key = props["listener.name.sasl_ssl.ssl.keystore.key"]
    assert key.startswith("-----BEGIN PRIVATE KEY-----\\n") and "\n" not in key
    with pytest.raises(ValueError, match="needs ssl_certificate and ssl_key"):
        KafkaBroker(tmp_path, ssl_port=4, ssl_certificate=files.certificate)
