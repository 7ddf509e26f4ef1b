#!/usr/bin/python
"""Ansible module: the Coffee Shop Ranker's smoke test, as a client on the internet sees the API."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ranker_smoke_test
short_description: Smoke-test a Coffee Shop Ranker API from the controller
description:
  - GET C(/healthz) and expect the status C(ok) in its JSON answer.
  - Then create a shop, upload a 1x1 PNG to it as C(multipart/form-data) (the part's bytes as they
    are), and fetch the photo anonymously from the public URL the API answers with, expecting a PNG of
    the same size. Not the same bytes: the API re-encodes every upload to drop its metadata.
  - One module run does what would otherwise take eight tasks, and it needs no scratch files.
  - In check mode only the C(/healthz) GET runs; it changes nothing.
  - Always reports C(changed=false), because the smoke-test shop is a record of the test, not managed state.
options:
  base_url:
    description: Where clients reach the API, e.g. C(http://203.0.113.7:11373).
    type: str
    required: true
  write_token:
    description: The bearer token of the API's write routes.
    type: str
    required: true
  shop_name:
    description: Name of the shop the test creates, so smoke-test data is easy to recognise.
    type: str
    required: true
  shop_address:
    description: Address of that shop.
    type: str
    default: Created by playbooks/verify.yml; safe to delete
  timeout:
    description: Seconds to wait for each HTTP answer.
    type: int
    default: 30
"""

RETURN = r"""
shop_id:
  description: Id of the shop the test created (absent in check mode).
  type: str
  returned: success, not in check mode
photo_url:
  description: Public URL of the uploaded photo.
  type: str
  returned: success, not in check mode
"""

import hashlib
import json
import urllib.error
import urllib.request
import uuid

from ansible.module_utils.basic import AnsibleModule

# A valid 1x1 PNG (the API recognises images by their content).
PHOTO = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da6364f8cf500f00038601805a347d6b0000000049454e44ae426082"
)


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header chunk, or None when data is no PNG."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


class SmokeTestError(Exception):
    """A step of the smoke test did not answer as expected; the message says which and what came back."""


def request(url: str, timeout: int, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    """(status, body) of one HTTP request; HTTP error statuses are answers too, not exceptions."""
    method = "GET" if data is None else "POST"
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310 (http/https only, below)
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        raise SmokeTestError(f"{method} {url} failed: {getattr(error, 'reason', error)}") from error


def expect(step: str, status: int, body: bytes, wanted: int) -> dict:
    """The JSON answer of a step that had to answer `wanted`."""
    text = body.decode("utf-8", "replace")
    if status != wanted:
        raise SmokeTestError(f"{step} answered {status} (expected {wanted}): {text[:500]}")
    try:
        return json.loads(text)
    except ValueError as error:
        raise SmokeTestError(f"{step} answered {status} but not JSON: {text[:500]}") from error


def multipart(field: str, filename: str, content_type: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one file part, and its Content-Type header."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def smoke_test(
    base_url: str, write_token: str, shop_name: str, shop_address: str, timeout: int, check_mode: bool = False
) -> dict:
    """Run the smoke test against base_url; return what it created. Raises SmokeTestError."""
    if not base_url.startswith(("http://", "https://")):
        raise SmokeTestError(f"base_url must be an http:// or https:// URL, not {base_url!r}")
    base_url = base_url.rstrip("/")
    health = expect("GET /healthz", *request(f"{base_url}/healthz", timeout), 200)
    if health.get("status") != "ok":
        raise SmokeTestError(f"GET /healthz answered 200 but not status ok: {health}")
    if check_mode:
        return {}

    authorization = {"Authorization": f"Bearer {write_token}"}
    shop = expect(
        "POST /shops",
        *request(
            f"{base_url}/shops",
            timeout,
            json.dumps({"name": shop_name, "address": shop_address}).encode(),
            {**authorization, "Content-Type": "application/json"},
        ),
        201,
    )
    body, content_type = multipart("file", "smoke-test.png", "image/png", PHOTO)
    photo = expect(
        f"POST /shops/{shop['id']}/photos",
        *request(
            f"{base_url}/shops/{shop['id']}/photos", timeout, body, {**authorization, "Content-Type": content_type}
        ),
        201,
    )
    # Anonymously, as a browser would: no token.
    status, fetched = request(photo["url"], timeout)
    if status != 200:
        raise SmokeTestError(f"GET {photo['url']} (the photo's public URL) answered {status}: {fetched[:200]!r}")
    if png_size(fetched) != png_size(PHOTO):
        raise SmokeTestError(
            f"GET {photo['url']} answered something else than the uploaded photo: expected a PNG of "
            f"{png_size(PHOTO)} pixels, got {len(fetched)} bytes (sha256 {hashlib.sha256(fetched).hexdigest()}) "
            f"starting {fetched[:16]!r}"
        )
    return {"shop_id": shop["id"], "photo_url": photo["url"]}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "base_url": {"type": "str", "required": True},
            "write_token": {"type": "str", "required": True, "no_log": True},
            "shop_name": {"type": "str", "required": True},
            "shop_address": {"type": "str", "default": "Created by playbooks/verify.yml; safe to delete"},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    try:
        created = smoke_test(check_mode=module.check_mode, **module.params)
    except SmokeTestError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, **created)


if __name__ == "__main__":
    main()
