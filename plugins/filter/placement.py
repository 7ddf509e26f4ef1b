# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where new API instances go: spread over the usable subnets, so one zone's outage leaves the others."""


def subnet_targets(subnet_ids, instances, wanted):
    """The instance count each subnet should reach once the missing instances are launched.

    Newcomers go one at a time to the subnet that holds the fewest (the first listed on a tie); running
    instances never move. Only subnets that get newcomers are returned, as [{subnet_id, count}], for
    ec2_instance's exact_count within one subnet.
    """
    subnet_ids = list(subnet_ids)
    if not subnet_ids:
        return []
    held = {subnet_id: 0 for subnet_id in subnet_ids}
    for instance in instances:
        if instance.get("subnet_id") in held:
            held[instance["subnet_id"]] += 1
    targets = dict(held)
    for _newcomer in range(max(int(wanted) - len(instances), 0)):
        fewest = min(subnet_ids, key=lambda subnet_id: (targets[subnet_id], subnet_ids.index(subnet_id)))
        targets[fewest] += 1
    return [{"subnet_id": s, "count": targets[s]} for s in subnet_ids if targets[s] > held[s]]


class FilterModule:
    def filters(self):
        return {"subnet_targets": subnet_targets}
