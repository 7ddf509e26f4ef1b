"""An instance's own user data (what RunInstances was given), merged into the cloud-config the sandbox
writes into a machine's NoCloud seed, as EC2's metadata service hands it to cloud-init."""

from __future__ import annotations

from .shell import Failure

CLOUD_CONFIG = "#cloud-config"


def merged_user_data(sandbox_config: dict, instance_user_data: str) -> str:
    """One cloud-config: the sandbox's keys, and the instance's. Lists such as bootcmd join (the
    sandbox's entries first); any other key the sandbox sets keeps the sandbox's value, which the
    machine needs to boot as the sandbox expects. Only cloud-config user data is understood."""
    import yaml  # PyYAML: there where ansible is; only needed when an instance brings user data

    config = dict(sandbox_config)
    if instance_user_data.strip():
        if not instance_user_data.startswith(CLOUD_CONFIG):
            raise Failure(f"the instance's user data must be a cloud-config (start with {CLOUD_CONFIG})")
        instance_config = yaml.safe_load(instance_user_data) or {}
        if not isinstance(instance_config, dict):
            raise Failure("the instance's user data must be a cloud-config mapping")
        for key, value in instance_config.items():
            if isinstance(config.get(key), list) and isinstance(value, list):
                config[key] = config[key] + value
            else:
                config.setdefault(key, value)
    return f"{CLOUD_CONFIG}\n" + yaml.safe_dump(config, default_flow_style=None, sort_keys=False)
