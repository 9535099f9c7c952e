"""Fixtures for the feedback tests: keys, an upload server that writes to disk, S3 (moto)."""

from __future__ import annotations

import os
import uuid

import pytest
from aiohttp import web

from onehop.client.config import ClientConfig
from onehop.client.transfer_urls import encode_transfer_url
from onehop.core.authpackage import generate_rsa_keypair
from tests.conftest import load_vectors
from tests.e2e.fakes import FileServer


@pytest.fixture(scope="session")
def feedback_keys() -> tuple[str, str]:
    """(PEM private key, base64 DER public key): the operators' feedback key."""
    return generate_rsa_keypair(2048)


@pytest.fixture(scope="session")
def vector_key() -> tuple[str, str]:
    case = load_vectors("feedback")["cases"][0]
    return case["private_key_pem_pkcs1"], case["public_key_b64_der"]


class UploadServer(FileServer):
    """FileServer whose PUTs also land in ``upload_dir`` (as an upload endpoint writes
    them), that can answer 503 a few times, and can start on a chosen port."""

    def __init__(self, upload_dir: str, *, fail_first: int = 0) -> None:
        super().__init__()
        self.upload_dir = upload_dir
        self.fail_first = fail_first
        self.on_put = None

    async def start(self, port: int = 0) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, request: web.Request):
        if request.method != "PUT":
            return await super()._handle(request)
        self.requests.append({"path": request.path, "method": "PUT", **dict(request.headers)})
        body = await request.read()
        if self.on_put is not None:
            self.on_put(request.path, body)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        self.files[request.path] = body
        target = os.path.join(self.upload_dir, *[p for p in request.path.split("/") if p not in ("", ".", "..")])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target + ".tmp", "wb") as f:
            f.write(body)
        os.replace(target + ".tmp", target)
        return web.Response(status=200)


@pytest.fixture
async def upload_server(tmp_path):
    server = UploadServer(str(tmp_path / "uploads"))
    os.makedirs(server.upload_dir)
    await server.start()
    yield server
    await server.close()


def client_config(tmp_path, public_key: str, urls: list[str], **overrides) -> ClientConfig:
    return ClientConfig(data_dir=str(tmp_path / "client"), client_version="41",
                        feedback_upload_urls=tuple(encode_transfer_url(u) for u in urls),
                        feedback_encryption_public_key=public_key, **overrides)


@pytest.fixture(scope="session")
def moto_server():
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_server):
    import boto3
    client = boto3.client("s3", endpoint_url=moto_server)
    name = f"feedback-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return client, name


def db_urls() -> list[str]:
    urls = ["sqlite"]
    if os.environ.get("ONEHOP_TEST_POSTGRES_URL"):
        urls.append("postgresql")
    return urls


def migrated(url: str) -> str:
    """``url`` with the network schema at head (the migrations own feedback_records);
    no keys are made: what ``onehop network init`` does, minus the RSA key generation."""
    from onehop.network.db import Database
    db = Database.open(url, create=True, check_schema=False)
    try:
        db.upgrade()
    finally:
        db.close()
    return url


def sqlite_db(tmp_path, name: str = "network.db") -> str:
    return migrated(f"sqlite:///{tmp_path / name}")


@pytest.fixture(params=db_urls())
def feedback_store(request, tmp_path):
    """A SqlFeedbackStore on the network database: a SQLite file, and PostgreSQL (its own
    schema) when configured."""
    from onehop.feedback.sqlstore import SqlFeedbackStore
    from tests.network.conftest import postgres_schema
    if request.param == "sqlite":
        store = SqlFeedbackStore.open(sqlite_db(tmp_path))
        yield store
        store.close()
        return
    with postgres_schema() as url:
        store = SqlFeedbackStore.open(migrated(url))
        yield store
        store.close()
