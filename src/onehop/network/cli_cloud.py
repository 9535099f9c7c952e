"""Parsers of the cloud verbs: ``provider``, ``host launch|destroy|launches``, ``heal``
(handlers in ``commands_cloud``)."""

from __future__ import annotations

from ..cliargs import add_target


def host_verbs(g, leaf) -> None:
    p = leaf(g, "launch", "launch hosts through a provider (machine, firewall, the network's SSH key), "
             "wait until each answers, record it", "commands_cloud.host_launch")
    p.add_argument("--provider", required=True, help="the provider's name (provider list)")
    p.add_argument("--region", required=True, help="the provider's region (AWS: eu-central-1; ssh: a country code)")
    p.add_argument("--count", type=int, default=1, help="how many hosts (default 1)")
    p.add_argument("--port", type=int, action="append", help="a port its servers will use (default 443); repeatable")
    p = leaf(g, "destroy", "archive a launched host, retire its servers and release everything its launch "
             "created", "commands_cloud.host_destroy")
    add_target(p, "name", "NAME", "the host's name", "--name")
    p.add_argument("--force", action="store_true", help="even if the last stats show users on it")
    leaf(g, "launches", "launches and what each still holds at its provider", "commands_cloud.launches_list")


def register(nsub, leaf, group) -> None:
    g = group(nsub, "provider", "cloud providers hosts are launched from")
    p = leaf(g, "add", "add a provider (no credentials are stored: environment or --credentials-file)",
             "commands_cloud.provider_add")
    add_target(p, "name", "NAME", "the provider's name (unique)", "--name")
    p.add_argument("--kind", required=True, choices=("aws", "ssh"), help="aws (EC2) or ssh (machines you made)")
    p.add_argument("--image", action="append", default=[], metavar="[REGION=]AMI",
                   help="aws: the machine image, for every region or one; repeatable")
    p.add_argument("--instance-type", default="t3.micro", help="aws: instance type (default t3.micro)")
    p.add_argument("--elastic-ip", action="store_true", help="aws: give each host an elastic IP")
    p.add_argument("--ssh-user", default="root", help="aws: management user cloud-init authorizes (default root)")
    p.add_argument("--credentials-file", help="aws: a shared credentials file (default: environment, profile)")
    p.add_argument("--profile", help="aws: the profile in it")
    p.add_argument("--endpoint-url", help="aws: EC2 endpoint (default $AWS_ENDPOINT_URL or AWS)")
    p.add_argument("--machines", metavar="FILE.json", help="ssh: the machines, a JSON list of "
                   "{address, region, ssh_port, ssh_user, ssh_host_key}")
    leaf(g, "list", "list providers", "commands_cloud.provider_list")

    p = leaf(nsub, "heal", "replace servers stats report flags as likely blocked: launch, assign, export, "
             "publish, deploy", "commands_cloud.heal")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--max-hosts", type=int, help="launch at most this many hosts (default: the "
                   "heal-max-hosts-per-run setting)")
    p.add_argument("--provider", help="for servers on hosts added by hand: launch from this provider")
    p.add_argument("--until", help="the stats day to judge from, YYYY-MM-DD (default today, UTC)")
    p.add_argument("--block-ratio", type=float, default=0.3, help="as stats report (0.3)")
    p.add_argument("--min-daily", type=float, default=10.0, help="as stats report (10)")
    p.add_argument("--export", metavar="DIR", help="export to DIR after replacing")
    p.add_argument("--publish-to", metavar="DIR|s3://bucket/prefix", help="publish the lists there")
    p.add_argument("--base-url", help="public URL of the publish target")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL")
    p.add_argument("--no-deploy", action="store_true", help="do not deploy the new hosts")
    p.add_argument("--source", metavar="PATH_OR_WHEEL", help="onehop to install on new hosts (as deploy)")
    p.add_argument("--python", default="/usr/bin/python3", help="the hosts' Python (as deploy)")
    p.add_argument("--root", default="/opt/onehop", help="where onehop lives on the hosts (as deploy; "
                   "{host} is replaced by the host's name, for hosts that share a machine in a lab)")
    p.add_argument("--ssh-key", action="append", default=[], metavar="FILE",
                   help="extra management keys (the provider's own key is always offered)")
    p.add_argument("--check-timeout", type=float, default=60.0, help="as deploy (60)")


def week_arguments(p) -> None:
    """``discovery simulate --week``: a censor that enumerates and blocks, with and without heal."""
    p.add_argument("--week", action="store_true", help="simulate users under a censor that enumerates and "
                   "blocks, with and without a daily heal (see docs/heal-simulation.md)")
    p.add_argument("--users", type=int, default=300, help="--week: simulated users (default 300)")
    p.add_argument("--embedded", type=int, default=4, help="--week: embedded servers (default 4)")
    p.add_argument("--discovery-servers", type=int, default=40, help="--week: discovery pool (default 40)")
    p.add_argument("--block-delay-hours", type=int, default=24,
                   help="--week: hours from the censor learning a server to blocking it (default 24)")
    p.add_argument("--heal", choices=("both", "on", "off"), default="both", help="--week: heal daily or not")
    p.add_argument("--max-hosts", type=int, default=10, help="--week: heal's cap per run (default 10)")
    p.add_argument("--plot", metavar="FILE.png", help="--week: draw the curves (matplotlib)")
