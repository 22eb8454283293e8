"""Real participants keep working across idle-cutting proxies, broken links and restarts.

One aggregator and two participant processes serve every test in this module (process
start is slow); each test starts its own run. Each participant reaches the aggregator
through its own loopback TCP proxy (``tests.faults.proxy``) that cuts connections idle
for two seconds, the way some proxies and NATs do after minutes. TLS stays end to end.
Timings are shortened: keepalive every 0.5 s, heartbeats every second, a participant is
Lost after five silent seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from crucible import spec as specs
from tests.faults.proxy import Proxy
from tests.federation import (
    Federation,
    free_port,
    organization_tables,
    spec,
    wait_for_phase,
)

pytestmark = pytest.mark.timeout(120)
NAMES = ["works-a", "works-b"]
IDLE_CUT_SECONDS = 2.0


@dataclass
class Linked:
    federation: Federation
    proxies: dict[str, Proxy]
    tables: dict
    processes: dict = field(default_factory=dict)

    def start_participant(self, name: str) -> None:
        """A participant process that reaches the aggregator through its proxy."""
        federation = self.federation
        federation.issue(name)
        env = federation._env(
            name,
            CRUCIBLE_AGGREGATOR=self.proxies[name].address,
            CRUCIBLE_METRICS_LISTEN=f"127.0.0.1:{free_port()}",
            CRUCIBLE_DATASETS=json.dumps(
                {"default": {"train": str(self.tables[name])}}
            ),
            CRUCIBLE_POLL_SECONDS="5",
            CRUCIBLE_HEARTBEAT_SECONDS="1",
            CRUCIBLE_KEEPALIVE_SECONDS="0.5",
            CRUCIBLE_BACKOFF_INITIAL_SECONDS="0.2",
            CRUCIBLE_BACKOFF_MAX_SECONDS="2",
            CRUCIBLE_POLICY__MAX_LOCAL_EPOCHS="5000",
        )
        self.processes[name] = federation._spawn(name, ["participant"], env)

    def run(self, key: str, **overrides):
        body = specs.parse(spec(NAMES, **overrides))
        with self.federation.admin() as admin:
            return admin.start_run(key, body).run_id

    def wait(self, run_id: str, timeout: float = 90.0):
        with self.federation.admin() as admin:
            return wait_for_phase(admin, run_id, ("Succeeded", "Failed"), timeout)


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Linked]:
    root = tmp_path_factory.mktemp("links")
    federation = Federation(root)
    try:
        federation.start_aggregator(CRUCIBLE_KEEPALIVE_SECONDS="0.5")
        proxies = {
            name: Proxy(
                federation.aggregator_address, idle_cut_seconds=IDLE_CUT_SECONDS
            )
            for name in NAMES
        }
        linked = Linked(federation, proxies, organization_tables(root, NAMES))
        for name in NAMES:
            linked.start_participant(name)
        yield linked
    finally:
        federation.stop()
        for proxy in locals().get("proxies", {}).values():
            proxy.close()


def events(federation: Federation, name: str, event: str) -> list[dict]:
    found = []
    for line in federation.log(name).splitlines():
        if f'"{event}"' in line:
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


def test_long_local_training_behind_an_idle_cutting_proxy_is_never_lost(linked):
    # Training takes several times the Lost threshold; only keepalive pings and
    # heartbeats cross the proxies while it runs.
    run_id = linked.run(
        "uid-long-training", rounds=1, localEpochs=300, roundTimeoutSeconds=120
    )
    final = linked.wait(run_id)

    assert final.phase == "Succeeded", final.message
    assert max(r.seconds for r in final.rounds) > 5.0  # longer than lostAfter
    assert [r.participants for r in final.rounds] == [2]
    assert all(proxy.idle_cuts == 0 for proxy in linked.proxies.values())
    assert not events(linked.federation, "aggregator", "participant_lost")
    for name in NAMES:
        assert not events(linked.federation, name, "aggregator_unreachable")


def test_link_broken_mid_upload_is_retried_and_the_update_counts_once(linked):
    proxy = linked.proxies["works-a"]
    proxy.break_upload_after(60_000)  # the update is ~280 kB; other calls are small
    run_id = linked.run("uid-mid-upload", rounds=2, model={"hidden": [256, 256]})
    final = linked.wait(run_id)

    assert final.phase == "Succeeded", final.message
    assert proxy.breaks == 1
    retried = events(linked.federation, "works-a", "aggregator_unreachable")
    assert any(e["call"] == "SendUpdate" for e in retried)
    assert [r.participants for r in final.rounds] == [2, 2]
    assert all(r.update_bytes == final.rounds[0].update_bytes for r in final.rounds)


def test_participant_whose_link_broke_continues_the_run(linked):
    run_id = linked.run("uid-link-broke", rounds=4, localEpochs=30)
    with linked.federation.admin() as admin:
        for status in admin.watch_run(run_id, timeout=60):
            if status.completed_rounds >= 1:
                break
    for proxy in linked.proxies.values():
        proxy.break_all()
    final = linked.wait(run_id)

    assert final.phase == "Succeeded", final.message
    assert [r.participants for r in final.rounds] == [2, 2, 2, 2]


@pytest.mark.timeout(300)
def test_restarted_participant_process_rejoins_the_running_run(linked):
    # One participant is enough for quorum and a round waits one second for the other,
    # so rounds go on while works-b is away; the run is long enough to see it return.
    run_id = linked.run(
        "uid-rejoin", rounds=500, minParticipants=1, graceSeconds=1, localEpochs=1
    )
    federation = linked.federation

    def round_with(participants: int, after: int) -> int:
        with federation.admin() as admin:
            for status in admin.watch_run(run_id, timeout=240):
                late = [r for r in status.rounds if r.round > after]
                if any(r.participants == participants for r in late):
                    return status.completed_rounds
        raise AssertionError(f"no round after {after} with {participants} participants")

    first = round_with(2, after=0)
    process = linked.processes["works-b"]
    process.kill()
    process.wait(timeout=10)
    without = round_with(1, after=first)  # rounds went on without it
    linked.start_participant("works-b")
    back = round_with(2, after=without)  # and it came back without manual steps
    with federation.admin() as admin:
        admin.cancel_run(run_id)

    assert first < without < back


def test_participants_back_off_with_jitter_while_the_aggregator_is_away(linked):
    federation = linked.federation
    before = len(events(federation, "works-a", "aggregator_unreachable"))
    federation.kill_aggregator()
    # The participants are between runs, polling for offers: wait for five failures.
    deadline = time.monotonic() + 30
    while len(events(federation, "works-a", "aggregator_unreachable")) < before + 5:
        assert time.monotonic() < deadline, "no retries logged"
        time.sleep(0.2)  # polling a log file: there is no event to wait on
    federation.start_aggregator(CRUCIBLE_KEEPALIVE_SECONDS="0.5")
    run_id = linked.run("uid-after-outage", rounds=1)
    final = linked.wait(run_id)

    assert final.phase == "Succeeded", final.message
    waits = [
        e["retry_in"]
        for e in events(federation, "works-a", "aggregator_unreachable")[before:]
    ]
    # Initial 0.2 s doubling to at most 2 s, each drawn from [half, all] of the step.
    steps = [min(0.2 * 2**i, 2.0) for i in range(len(waits))]
    assert all(s / 2 - 0.01 <= w <= s + 0.01 for w, s in zip(waits, steps, strict=True))
    assert any(w < s - 0.01 for w, s in zip(waits, steps, strict=True))  # jittered
