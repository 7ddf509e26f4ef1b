#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the Coffee Shop Ranker's smoke test, as a client on the internet sees the API."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ranker_smoke_test
short_description: Smoke-test a Coffee Shop Ranker API from the controller, leaving nothing behind
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - GET C(/healthz) and expect the status C(ok) in its JSON answer.
  - Then create a shop, upload a 1x1 PNG to it as C(multipart/form-data) (the part's bytes as they
    are), and fetch the photo anonymously from the public URL the API answers with, expecting a PNG of
    the same size; not the same bytes, as the API re-encodes every upload to drop its metadata.
  - Whatever happens after the shop was created, the module then deletes it through the API
    (C(DELETE /shops/{id}), which deletes its photo too), and with O(bucket) removes every version and
    delete marker of the photo's object with the controller's AWS credentials, so the production table
    and bucket keep nothing of the test. A failed step fails the module after this cleanup, with the
    step's message; a failed cleanup names what was left behind.
  - One module run does what would otherwise take a dozen tasks, and it needs no scratch files.
  - In check mode only the C(/healthz) GET runs; it changes nothing.
  - Always reports C(changed=false), since at the end the test's data is gone again.
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
  bucket:
    description:
      - The media bucket the API stores photos in. The bucket is versioned, so the API's delete leaves
        the photo as a noncurrent version behind a delete marker; with this option the module removes
        both (every version of the photo's key), which needs s3:ListBucketVersions on the bucket and
        s3:DeleteObjectVersion on the key.
      - The key is the one the API answered for the upload (else the longest end of the photo's URL
        path that names an object in the bucket).
      - Omitted, no version is removed; the bucket's lifecycle rule expires them.
    type: str
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Smoke-test the API as a client sees it, then remove the test's shop and every version of its photo
  coffeeshop.ranker.ranker_smoke_test:
    base_url: http://203.0.113.7:11373
    write_token: "{{ api_write_token }}"
    shop_name: Smoke test
    bucket: coffee-ranker-media-123456789012
"""

RETURN = r"""
shop_id:
  description: Id of the shop the test created, and deleted again (absent in check mode).
  type: str
  returned: not in check mode, once the shop was created
photo_url:
  description: Public URL of the uploaded photo.
  type: str
  returned: not in check mode, once the photo was uploaded
photo_key:
  description: The photo's key in the bucket (absent when it could not be told).
  type: str
  returned: not in check mode, once the photo was uploaded
cleaned_up:
  description:
    - What the cleanup removed. C(shop) is true when the API deleted the shop (with its photo),
      C(photo_versions) counts the versions and delete markers of the photo removed from O(bucket).
  type: dict
  returned: not in check mode, once the shop was created
  sample: {shop: true, photo_versions: 2}
"""

import hashlib
import json
import urllib.error
import urllib.parse
import uuid

from ansible.module_utils.urls import open_url
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

# A valid 1x1 PNG (the API recognises images by their content).
PHOTO = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da6364f8cf500f00038601805a347d6b0000000049454e44ae426082"
)
#: DeleteObjects takes at most this many versions per request.
DELETE_BATCH = 1000


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header chunk, or None when data is no PNG."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


class SmokeTestError(Exception):
    """A step of the smoke test did not answer as expected, or its cleanup failed; the message says
    which and what came back. `result` holds what the test created and what its cleanup removed."""

    def __init__(self, message: str, result: dict | None = None) -> None:
        super().__init__(message)
        self.result = result if result is not None else {}


def request(
    url: str, timeout: int, data: bytes | None = None, headers: dict | None = None, method: str | None = None
) -> tuple[int, bytes]:
    """(status, body) of one HTTP request; HTTP error statuses are answers too, not exceptions."""
    method = method or ("GET" if data is None else "POST")
    try:
        # Without the controller's ~/.netrc: the photo's fetch must stay anonymous, as a browser's is.
        with open_url(
            url, data=data, headers=headers or {}, method=method, timeout=timeout, use_netrc=False
        ) as response:
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
        answer = json.loads(text)
    except ValueError as error:
        raise SmokeTestError(f"{step} answered {status} but not JSON: {text[:500]}") from error
    if not isinstance(answer, dict):
        raise SmokeTestError(f"{step} answered {status} but not a JSON object: {text[:500]}")
    return answer


def text_field(step: str, answer: dict, name: str) -> str:
    """A string field the answer of a step must have."""
    value = answer.get(name)
    if not isinstance(value, str) or not value:
        raise SmokeTestError(f"{step} answered without a {name}: {json.dumps(answer)[:500]}")
    return value


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


def photo_round_trip(base_url: str, authorization: dict, shop_id: str, timeout: int, result: dict) -> None:
    """Upload the photo to the shop and fetch it from its public URL; what was stored goes into
    `result` at once, so that a later failing step still leaves the cleanup what it needs."""
    body, content_type = multipart("file", "smoke-test.png", "image/png", PHOTO)
    step = f"POST /shops/{shop_id}/photos"
    photo = expect(
        step,
        *request(f"{base_url}/shops/{shop_id}/photos", timeout, body, {**authorization, "Content-Type": content_type}),
        201,
    )
    result["photo_url"] = url = text_field(step, photo, "url")
    # The key the API answered, if the URL ends with it (public URL = base URL + "/" + key): never
    # purge the versions of a key that is not this photo's.
    key = photo.get("key")
    if isinstance(key, str) and key and urllib.parse.unquote(urllib.parse.urlsplit(url).path).endswith("/" + key):
        result["photo_key"] = key
    # Anonymously, as a browser would: no token.
    status, fetched = request(url, timeout)
    if status != 200:
        raise SmokeTestError(f"GET {url} (the photo's public URL) answered {status}: {fetched[:200]!r}")
    if png_size(fetched) != png_size(PHOTO):
        raise SmokeTestError(
            f"GET {url} answered something else than the uploaded photo: expected a PNG of "
            f"{png_size(PHOTO)} pixels, got {len(fetched)} bytes (sha256 {hashlib.sha256(fetched).hexdigest()}) "
            f"starting {fetched[:16]!r}"
        )


def key_from_url(s3, bucket: str, url: str) -> str | None:
    """The photo's key when the API did not say it: the longest end of the URL's path that names an
    object (or a deleted one) in the bucket. Works for every URL shape (bucket host, bucket in the
    path, a CDN's base URL with a path of its own) without knowing which one the API chose."""
    segments = urllib.parse.unquote(urllib.parse.urlsplit(url).path).strip("/").split("/")
    for start in range(len(segments)):
        candidate = "/".join(segments[start:])
        if candidate and versions_of(s3, bucket, candidate):
            return candidate
    return None


def versions_of(s3, bucket: str, key: str) -> list[dict]:
    """Every version and delete marker of exactly `key` (a prefix listing also finds longer keys)."""
    found = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            if entry["Key"] == key:
                found.append({"Key": key, "VersionId": entry["VersionId"]})
    return found


def purge_versions(s3, bucket: str, key: str) -> int:
    """Delete every version and delete marker of `key` for good; how many. Raises SmokeTestError."""
    removed = 0
    versions = versions_of(s3, bucket, key)
    for start in range(0, len(versions), DELETE_BATCH):
        batch = versions[start : start + DELETE_BATCH]
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        errors = answer.get("Errors", [])
        removed += len(batch) - len(errors)
        if errors:
            first = errors[0]
            raise SmokeTestError(f"{len(errors)} version(s) refused ({first.get('Code')}: {first.get('Message')})")
    return removed


def clean_up(base_url: str, authorization: dict, timeout: int, result: dict, bucket: str | None, s3) -> list[str]:
    """Delete the test's shop through the API, then purge its photo's versions from the bucket.
    Records what was removed in result["cleaned_up"]; returns what was left behind, one sentence each."""
    shop_id = result["shop_id"]
    cleaned = result["cleaned_up"]
    left_behind = []
    try:
        status, body = request(f"{base_url}/shops/{shop_id}", timeout, headers=authorization, method="DELETE")
    except SmokeTestError as error:
        status, body = None, str(error).encode()
    if status == 204:
        cleaned["shop"] = True
    elif status != 404:  # 404: someone else deleted it already
        answer = " ".join(body.decode("utf-8", "replace").split())[:300]
        left_behind.append(
            f"shop {shop_id} (DELETE /shops/{shop_id} answered {status or 'nothing'}: {answer}); delete it "
            f"with the write token: curl -X DELETE -H 'Authorization: Bearer <token>' {base_url}/shops/{shop_id}"
        )
    if bucket is None or s3 is None or "photo_url" not in result:
        return left_behind
    key = result.get("photo_key")
    try:
        if key is None:
            key = key_from_url(s3, bucket, result["photo_url"])
            if key is None:
                left_behind.append(f"the photo at {result['photo_url']}, whose key in bucket {bucket} is unknown")
                return left_behind
            result["photo_key"] = key
        cleaned["photo_versions"] = purge_versions(s3, bucket, key)
    except Exception as error:  # botocore's errors or any other: the operator must learn what is left
        where = f"s3://{bucket}/{key}" if key else f"the key of {result['photo_url']} in bucket {bucket}"
        left_behind.append(f"versions of {where} ({error}); remove every version and delete marker of that key")
    return left_behind


def smoke_test(
    base_url: str,
    write_token: str,
    shop_name: str,
    shop_address: str,
    timeout: int,
    check_mode: bool = False,
    bucket: str | None = None,
    s3=None,
) -> dict:
    """Run the smoke test against base_url, then remove what it wrote (with `bucket` and an S3 client
    `s3`, every version of its photo too); return what it created and removed. Raises SmokeTestError."""
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
    result = {
        "shop_id": text_field("POST /shops", shop, "id"),
        "cleaned_up": {"shop": False, "photo_versions": 0},
    }
    failed: BaseException | None = None
    try:
        photo_round_trip(base_url, authorization, result["shop_id"], timeout, result)
    except BaseException as error:
        failed = error
        raise
    finally:
        left_behind = clean_up(base_url, authorization, timeout, result, bucket, s3)
        if left_behind:
            # The step's own message first (if one failed), then what the operator must remove.
            outcome = str(failed) if failed is not None else "The smoke test passed"
            raise SmokeTestError(
                f"{outcome}; but its cleanup failed, left behind: {'; '.join(left_behind)}", result
            ) from failed
        if isinstance(failed, SmokeTestError):
            failed.result = result  # it goes on as it was raised, with what the cleanup removed
    return result


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "base_url": {"type": "str", "required": True},
            "write_token": {"type": "str", "required": True, "no_log": True},
            "shop_name": {"type": "str", "required": True},
            "shop_address": {"type": "str", "default": "Created by playbooks/verify.yml; safe to delete"},
            "timeout": {"type": "int", "default": 30},
            "bucket": {"type": "str"},
        },
        supports_check_mode=True,
    )
    params = {name: module.params[name] for name in ("base_url", "write_token", "shop_name", "shop_address", "timeout")}
    bucket = module.params["bucket"]
    # The controller's credentials (module_defaults), for the version purge only; the API's writes use the token.
    s3 = module.client("s3") if bucket and not module.check_mode else None
    try:
        result = smoke_test(check_mode=module.check_mode, bucket=bucket, s3=s3, **params)
    except SmokeTestError as error:
        module.fail_json(msg=str(error), changed=False, **error.result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
