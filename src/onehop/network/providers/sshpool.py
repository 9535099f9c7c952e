"""``--kind ssh``: machines someone else made (today's ``host add``, as a provider).

The provider's settings list the machines (``provider add --kind ssh --machines FILE``,
a JSON list of ``{"address", "region" (country), "ssh_port", "ssh_user", "ssh_host_key"}``).
``launch`` hands out a machine of the region that no live launch holds; ``release``
gives it back to the pool. Nothing is created or destroyed anywhere: the operator who
made the machines wipes them.
"""

from __future__ import annotations

from ...errors import ConfigProblem
from ..hosts import host_key_problem, region_problem
from . import LaunchRequest, Machine, ProviderError, Record, Resource

SETTINGS = ("machines", "in_use")


def machine_problems(machines) -> list[ConfigProblem]:
    if not isinstance(machines, list) or not machines:
        return [ConfigProblem("--machines", "a JSON list of machines: [{\"address\", \"region\", "
                                            "\"ssh_port\", \"ssh_user\", \"ssh_host_key\"}, ...]")]
    problems = []
    for n, machine in enumerate(machines):
        if not isinstance(machine, dict) or not machine.get("address"):
            problems.append(ConfigProblem(f"--machines[{n}]", "needs an address"))
            continue
        problem = region_problem(str(machine.get("region", "")))
        if problem:
            problems.append(ConfigProblem(f"--machines[{n}].region", problem))
        if not machine.get("ssh_host_key") or host_key_problem(machine["ssh_host_key"]):
            problems.append(ConfigProblem(f"--machines[{n}].ssh_host_key", "the machine's pinned SSH host key"))
    return problems


def settings_problems(settings: dict) -> list[ConfigProblem]:
    return machine_problems(settings.get("machines"))


class SshPoolProvider:
    kind = "ssh"

    def __init__(self, settings: dict, in_use: set[str] | None = None) -> None:
        self.machines = list(settings.get("machines") or [])
        self.in_use = set(in_use or ())

    def country(self, region: str) -> str:
        return region

    def region_for(self, country: str) -> str | None:
        return country if any(m["region"] == country for m in self.machines) else None

    def launch(self, request: LaunchRequest, record: Record) -> Machine:
        free = [m for m in self.machines if m["region"] == request.region and m["address"] not in self.in_use]
        if not free:
            raise ProviderError(f"no free machine in {request.region} (add machines to the provider)", quota=True)
        machine = free[0]
        record(Resource("machine", machine["address"], {"region": request.region}))
        self.in_use.add(machine["address"])
        return Machine(machine["address"], machine.get("public_ip") or machine["address"], request.region,
                       int(machine.get("ssh_port", 22)), machine.get("ssh_user", "root"), machine["ssh_host_key"])

    def release(self, resources: list[Resource], released: Record) -> None:
        for resource in resources:
            self.in_use.discard(resource.id)
            released(resource)


def make(settings: dict) -> SshPoolProvider:
    return SshPoolProvider(settings)
