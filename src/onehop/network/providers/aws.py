"""AWS EC2 through boto3: per launch a key pair (the network's management key), a
security group opening management SSH and the servers' ports, one instance whose
cloud-init installs the network-made SSH host key (pinned before first boot), and,
if the provider says so, an elastic IP.

Settings (``provider add --kind aws``; none of them a secret): ``credentials_file``
and ``profile`` (else boto3's usual environment variables, profile or instance role),
``endpoint_url`` (else ``AWS_ENDPOINT_URL``; tests use moto's server), ``images``
(``{region or "*": AMI}``), ``instance_type``, ``elastic_ip``, ``ssh_user``.
"""

from __future__ import annotations

import os
import re
import time

from ...errors import ConfigProblem
from . import LaunchRequest, Machine, ProviderError, Record, Resource

#: EC2 regions -> the country their datacenters are in (hosts are recorded by country).
REGION_COUNTRIES = {
    "us-east-1": "US", "us-east-2": "US", "us-west-1": "US", "us-west-2": "US", "ca-central-1": "CA",
    "sa-east-1": "BR", "eu-central-1": "DE", "eu-central-2": "CH", "eu-west-1": "IE", "eu-west-2": "GB",
    "eu-west-3": "FR", "eu-north-1": "SE", "eu-south-1": "IT", "eu-south-2": "ES", "me-south-1": "BH",
    "me-central-1": "AE", "il-central-1": "IL", "af-south-1": "ZA", "ap-south-1": "IN", "ap-south-2": "IN",
    "ap-east-1": "HK", "ap-northeast-1": "JP", "ap-northeast-2": "KR", "ap-northeast-3": "JP",
    "ap-southeast-1": "SG", "ap-southeast-2": "AU", "ap-southeast-3": "ID", "ap-southeast-4": "AU",
}
QUOTA_CODES = {"InstanceLimitExceeded", "VcpuLimitExceeded", "AddressLimitExceeded", "ResourceLimitExceeded",
               "SecurityGroupLimitExceeded", "KeyPairLimitExceeded", "MaxSpotInstanceCountExceeded",
               "InsufficientInstanceCapacity", "RequestLimitExceeded"}
GONE_CODES = {"InvalidInstanceID.NotFound", "InvalidGroup.NotFound", "InvalidKeyPair.NotFound",
              "InvalidAllocationID.NotFound", "InvalidAssociationID.NotFound"}
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s\"']*@")
SETTINGS = ("credentials_file", "profile", "endpoint_url", "images", "instance_type", "elastic_ip", "ssh_user")


def settings_problems(settings: dict) -> list[ConfigProblem]:
    problems = []
    if not settings.get("images"):
        problems.append(ConfigProblem("--image", "give the machine image (AMI), for every region or REGION=AMI"))
    path = settings.get("credentials_file")
    if path and not os.path.isfile(os.path.expanduser(path)):
        problems.append(ConfigProblem("--credentials-file", f"no file {path}"))
    if "@" in str(settings.get("endpoint_url") or "").split("://", 1)[-1].split("/", 1)[0]:
        problems.append(ConfigProblem("--endpoint-url", "no credentials in the URL (they would be stored in the "
                                      "database): use the environment or --credentials-file"))
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        problems.append(ConfigProblem("settings", f"unknown: {', '.join(sorted(unknown))}"))
    return problems


def _user_data(request: LaunchRequest, ssh_user: str) -> str:
    """cloud-init: the network's host key (so the pinned key is right from the first boot)
    and the management key for ``ssh_user``."""
    private = "\n".join("      " + line for line in request.host_key_private.strip().splitlines())
    return (f"#cloud-config\ndisable_root: {'false' if ssh_user == 'root' else 'true'}\n"
            f"ssh_deletekeys: true\nssh_keys:\n  ed25519_private: |\n{private}\n"
            f"  ed25519_public: {request.host_key_public}\n"
            f"ssh_authorized_keys:\n  - {request.ssh_public_key}\n")


class AwsProvider:
    kind = "aws"

    def __init__(self, settings: dict, *, poll: float = 2.0, timeout: float = 600.0) -> None:
        self.settings = settings
        self.poll, self.timeout = poll, timeout

    # -- boto3 ---------------------------------------------------------------------
    def _client(self, region: str):
        import boto3
        import botocore.session
        core = botocore.session.Session(profile=self.settings.get("profile") or None)
        if self.settings.get("credentials_file"):
            core.set_config_variable("credentials_file", os.path.expanduser(self.settings["credentials_file"]))
        endpoint = self.settings.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or None
        return boto3.Session(botocore_session=core).client("ec2", region_name=region, endpoint_url=endpoint)

    def _call(self, what: str, function, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return function(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "") or str(exc)
            raise ProviderError(f"AWS {what}: {code}: {message}", quota=code in QUOTA_CODES, code=code) from None
        except BotoCoreError as exc:  # may name the endpoint URL: never with its user:password@
            message = _USERINFO.sub(r"\1", str(exc))
            raise ProviderError(f"AWS {what}: {message}") from None

    # -- the interface -------------------------------------------------------------
    def country(self, region: str) -> str:
        return REGION_COUNTRIES.get(region, "")

    def region_for(self, country: str) -> str | None:
        return next((r for r, c in REGION_COUNTRIES.items() if c == country), None)

    def _image(self, region: str) -> str:
        images = self.settings.get("images") or {}
        image = images.get(region) or images.get("*")
        if not image:
            raise ProviderError(f"no machine image for {region} (provider add --image {region}=ami-...)")
        return image

    def launch(self, request: LaunchRequest, record: Record) -> Machine:
        if request.region not in REGION_COUNTRIES:
            raise ProviderError(f"unknown EC2 region {request.region!r}")
        ec2, name = self._client(request.region), f"onehop-{request.host_name}"
        image = self._image(request.region)
        self._call("import-key-pair", ec2.import_key_pair, KeyName=name,
                   PublicKeyMaterial=request.ssh_public_key.encode("ascii"))
        record(Resource("key-pair", name, {"region": request.region}))
        group = self._call("create-security-group", ec2.create_security_group, GroupName=name,
                           Description=f"onehop host {request.host_name}")["GroupId"]
        record(Resource("security-group", group, {"region": request.region}))
        ports = sorted({22, *request.ports})
        self._call("authorize-security-group-ingress", ec2.authorize_security_group_ingress, GroupId=group,
                   IpPermissions=[{"IpProtocol": "tcp", "FromPort": p, "ToPort": p,
                                   "IpRanges": [{"CidrIp": "0.0.0.0/0"}]} for p in ports])
        ssh_user = self.settings.get("ssh_user") or "root"
        tags = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name},
                                                      {"Key": "onehop-host", "Value": request.host_name}]}]
        reply = self._call("run-instances", ec2.run_instances, ImageId=image, MinCount=1, MaxCount=1,
                           InstanceType=self.settings.get("instance_type") or "t3.micro", KeyName=name,
                           SecurityGroupIds=[group], UserData=_user_data(request, ssh_user),
                           TagSpecifications=tags)
        instance = reply["Instances"][0]["InstanceId"]
        record(Resource("instance", instance, {"region": request.region}))
        public_ip = self._wait_running(ec2, instance)
        if self.settings.get("elastic_ip"):
            public_ip = self._elastic_ip(ec2, instance, request.region, record)
        return Machine(instance, public_ip, request.region, 22, ssh_user, request.host_key_public)

    def _wait_running(self, ec2, instance: str) -> str:
        deadline = time.monotonic() + self.timeout
        while True:
            found = self._call("describe-instances", ec2.describe_instances, InstanceIds=[instance])
            data = found["Reservations"][0]["Instances"][0]
            state, ip = data["State"]["Name"], data.get("PublicIpAddress")
            if state == "running" and ip:
                return ip
            if state in ("shutting-down", "terminated", "stopped"):
                raise ProviderError(f"AWS instance {instance} is {state} instead of starting")
            if time.monotonic() > deadline:
                raise ProviderError(f"AWS instance {instance} not running with a public IP after {self.timeout:g}s")
            time.sleep(self.poll)

    def _elastic_ip(self, ec2, instance: str, region: str, record: Record) -> str:
        address = self._call("allocate-address", ec2.allocate_address, Domain="vpc")
        allocation = address["AllocationId"]
        record(Resource("elastic-ip", allocation, {"region": region}))
        association = self._call("associate-address", ec2.associate_address, InstanceId=instance,
                                 AllocationId=allocation)["AssociationId"]
        record(Resource("elastic-ip", allocation, {"region": region, "association": association}))
        return address["PublicIp"]

    def release(self, resources: list[Resource], released: Record) -> None:
        """Elastic IPs, then instances (waiting until terminated), then groups and key pairs."""
        order = {"elastic-ip": 0, "instance": 1, "security-group": 2, "key-pair": 3}
        for resource in sorted(resources, key=lambda r: order.get(r.kind, 9)):
            ec2 = self._client(resource.details.get("region") or "us-east-1")
            try:
                self._release_one(ec2, resource)
            except ProviderError as exc:
                if getattr(exc, "code", "") not in GONE_CODES:
                    raise
            released(resource)

    def _release_one(self, ec2, resource: Resource) -> None:
        if resource.kind == "elastic-ip":
            association = resource.details.get("association")
            if association:
                try:
                    self._call("disassociate-address", ec2.disassociate_address, AssociationId=association)
                except ProviderError as exc:
                    if getattr(exc, "code", "") not in GONE_CODES:
                        raise
            self._call("release-address", ec2.release_address, AllocationId=resource.id)
        elif resource.kind == "instance":
            self._call("terminate-instances", ec2.terminate_instances, InstanceIds=[resource.id])
            self._wait_terminated(ec2, resource.id)
        elif resource.kind == "security-group":
            self._call("delete-security-group", ec2.delete_security_group, GroupId=resource.id)
        elif resource.kind == "key-pair":
            self._call("delete-key-pair", ec2.delete_key_pair, KeyName=resource.id)
        else:
            raise ProviderError(f"AWS cannot release a {resource.kind!r}")

    def _wait_terminated(self, ec2, instance: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            found = self._call("describe-instances", ec2.describe_instances, InstanceIds=[instance])
            if found["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated":
                return
            if time.monotonic() > deadline:
                raise ProviderError(f"AWS instance {instance} not terminated after {self.timeout:g}s")
            time.sleep(self.poll)


def make(settings: dict) -> AwsProvider:
    return AwsProvider(settings)
