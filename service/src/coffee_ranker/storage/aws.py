"""One boto3 session for the process: clients made from it share the loaded service models."""

import functools

import boto3


@functools.lru_cache(maxsize=None)
def session() -> boto3.session.Session:
    # The default credential chain: environment, then the EC2 instance profile.
    return boto3.session.Session()
