"""A real S3 API on localhost (moto's server mode) for durable-tier tests; s3fs talks to it over HTTP.

Subprocesses (pipeline runs, local-backend nodes) reach it through the standard AWS environment
variables this sets, exactly as they would reach a real bucket.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def s3_server() -> Iterator[str]:
    """Start moto's S3 server, point the AWS environment at it, yield its endpoint URL; restore on exit."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in (*S3_ENV, "AWS_ENDPOINT_URL")}
    os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": endpoint})
    forget_s3_clients()
    try:
        yield endpoint
    finally:
        server.stop()
        forget_s3_clients()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def forget_s3_clients() -> None:
    """fsspec reuses S3 filesystems (and their endpoint) across calls: drop them when the server changes."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def new_bucket() -> str:
    """Create a fresh bucket on the current endpoint and return its ``s3://`` URL."""
    import boto3

    name = f"nexa-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A module's S3 server (import this fixture into a test module to use it)."""
    with s3_server() as endpoint:
        yield endpoint
