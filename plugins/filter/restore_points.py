# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What restore.yml's operator variables name, worked out on the controller before any AWS call.

`restore_point` reads restore_from or restore_photos_at; `restore_problems` returns one sentence per
broken rule, each naming the variable (an empty list means valid). The modules parse times the same way
(Python's ISO 8601 reading, which needs a time zone here), so what passes here parses there.
"""

import re
from datetime import datetime, timedelta, timezone

_BACKUP_ARN = re.compile(
    r"^arn:(?P<partition>aws(-cn|-us-gov)?):dynamodb:(?P<region>[a-z0-9-]+):\d{12}:table/[A-Za-z0-9_.-]{3,255}"
    r"/backup/[A-Za-z0-9-]+$"
)
# A date, a time to the second at least, and a zone: what the modules read.
_ISO_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})$")
_EXAMPLE = "such as 2026-12-05T14:30:00Z"


def restore_point(value):
    """{kind: none|latest|backup|time|invalid, time (UTC ISO), epoch, region, partition, problem}."""
    text = "" if value is None else str(value).strip()
    if text in ("", "none"):
        return {"kind": "none"}
    if text == "latest":
        return {"kind": "latest"}
    if text.startswith("arn:"):
        match = _BACKUP_ARN.match(text)
        if not match:
            return {
                "kind": "invalid",
                "problem": "is not the ARN of a DynamoDB backup (arn:aws:dynamodb:<region>:<account id>:table/<table>"
                "/backup/<backup id>)",
            }
        return {"kind": "backup", "region": match.group("region"), "partition": match.group("partition")}
    match = _ISO_TIME.match(text.upper())
    if not match:
        return {"kind": "invalid", "problem": "is not an ISO 8601 time with a time zone"}
    # By hand, as the modules read it: Python 3.10's fromisoformat() reads neither Z nor every fraction.
    whole, fraction, zone = match.groups()
    try:
        moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")
    except ValueError as error:
        return {"kind": "invalid", "problem": f"is not a valid time ({error})"}
    offset = timedelta() if zone == "Z" else timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    moment = moment.replace(
        microsecond=int((fraction or "0").ljust(6, "0")), tzinfo=timezone(-offset if zone[0] == "-" else offset)
    ).astimezone(timezone.utc)  # noqa: UP017 (controllers may run Python 3.10)
    return {"kind": "time", "time": moment.isoformat().replace("+00:00", "Z"), "epoch": moment.timestamp()}


def restore_problems(variables, aws_region, photo_days, now_epoch):
    """Every broken rule of restore.yml's variables: restore_from, restore_cutover, restore_photos_at."""
    problems = []
    wanted = restore_point(variables.get("restore_from"))
    photos = restore_point(variables.get("restore_photos_at"))
    cutover = str(variables.get("restore_cutover", False)).strip().lower()
    if wanted["kind"] == "invalid":
        problems.append(
            f"restore_from {variables.get('restore_from')} {wanted['problem']}: give latest, the ARN of a backup, "
            f"or an ISO 8601 time with a time zone ({_EXAMPLE})."
        )
    elif wanted["kind"] == "backup" and wanted["region"] != aws_region:
        problems.append(
            f"restore_from names a backup in {wanted['region']}, but aws_region is {aws_region}: a backup is "
            "restored in its own region; use a backup of this region."
        )
    elif wanted["kind"] == "time" and wanted["epoch"] > now_epoch:
        problems.append(f"restore_from {wanted['time']} is in the future: nothing can be restored to it.")
    if cutover not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
        problems.append(f"restore_cutover {variables.get('restore_cutover')} must be true or false.")
    elif cutover in ("true", "yes", "1", "on") and wanted["kind"] == "none":
        problems.append("restore_cutover=true needs restore_from: the table to switch the API to.")
    if photos["kind"] in ("invalid", "latest", "backup"):
        problems.append(
            f"restore_photos_at {variables.get('restore_photos_at')} must be an ISO 8601 time with a time zone "
            f"({_EXAMPLE}), none (photos left as they are), or empty (with restore_cutover, the time of the "
            "restored data)."
        )
    elif photos["kind"] == "time":
        problems += photo_time_problems(photos, "restore_photos_at", photo_days, now_epoch)
    if wanted["kind"] == "none" and photos["kind"] != "time":
        problems.append(
            "restore.yml needs restore_from (latest, the ARN of a backup, or an ISO 8601 time) or restore_photos_at "
            "(an ISO 8601 time): it was given neither."
        )
    return problems


def photo_time_problems(point, variable, photo_days, now_epoch):
    """Photos go back only within the time their old versions are kept (the bucket's lifecycle)."""
    if point["epoch"] > now_epoch:
        return [f"{variable} {point['time']} is in the future: nothing can be restored to it."]
    if now_epoch - point["epoch"] >= float(photo_days) * 86400:
        return [
            f"{variable} {point['time']} is more than {photo_days} days ago (media_noncurrent_version_expiry_days): "
            "older photo versions may have expired, so the photos as they were then cannot be known; choose a "
            "later time, or none to leave the photos as they are."
        ]
    return []


class FilterModule:
    def filters(self):
        return {
            "restore_point": restore_point,
            "restore_problems": restore_problems,
            "photo_time_problems": photo_time_problems,
        }
