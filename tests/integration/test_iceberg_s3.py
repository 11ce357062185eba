"""The Iceberg warehouse on an object store: ``s3://`` data and metadata files on moto's
standalone S3 server (started by the test, on 127.0.0.1), the catalog in SQLite. Rows
committed by ``CommitToIceberg``'s append read back through pyiceberg, and the files are
objects in the bucket, none on local disk."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from beam_jobs.services.local import free_port
from schemas.iceberg import BY_NAME, to_arrow_table
from tests.records import call_row
from transforms.io.iceberg import CatalogConfig, append, ensure_tables

pytestmark = pytest.mark.integration
BUCKET = "callqa-warehouse"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server (``moto_server`` from PyPI) on a free port, with an empty bucket."""
    import boto3

    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if server is None:
        pytest.skip("moto[server] is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", **KEYS)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - not listening yet
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_tables_on_s3_paths(s3_endpoint: str, tmp_path: Path) -> None:
    import boto3

    cfg = CatalogConfig(
        uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        warehouse=f"s3://{BUCKET}/warehouse",
        properties=(
            ("s3.endpoint", s3_endpoint),
            ("s3.access-key-id", KEYS["aws_access_key_id"]),
            ("s3.secret-access-key", KEYS["aws_secret_access_key"]),
            ("s3.region", "us-east-1"),
        ),
    )
    assert "testing" not in repr(cfg)  # credentials stay out of logs
    tables = ensure_tables(cfg)
    rows = [call_row(call_id=f"s3-{i}") for i in range(3)]
    append(tables["calls"], to_arrow_table(BY_NAME["calls"], rows), {"callqa.test": "s3"})

    again = ensure_tables(cfg)["calls"]
    assert again.metadata_location.startswith(f"s3://{BUCKET}/warehouse/")
    assert sorted(again.scan().to_arrow().column("call_id").to_pylist()) == ["s3-0", "s3-1", "s3-2"]
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **KEYS)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(k.endswith(".parquet") and "/calls/data/" in k for k in keys), keys
    assert any(k.endswith(".metadata.json") for k in keys), keys
    assert [p.name for p in tmp_path.iterdir()] == ["catalog.db"]  # nothing else on disk
