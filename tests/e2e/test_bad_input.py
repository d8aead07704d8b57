"""Bad input gets one clear line naming the file or peer, and nothing is applied or lost.

Real processes: a hub on a repo without a fleet file, and an agent whose
certificate comes from a CA the hub does not trust.
"""

from __future__ import annotations

import json
import shutil

import pytest

from skerry.core import tls
from skerry.testing.devstack import EXAMPLES, Stack, git, wait_for
from tests.faults.helpers import error_lines

pytestmark = [pytest.mark.kube, pytest.mark.e2e]


def test_a_hub_whose_repo_lacks_skerry_yaml_says_so_and_serves_nothing(kubeconfig, tmp_path):
    stack = Stack(tmp_path, kubeconfig)
    shutil.copytree(EXAMPLES, stack.repo)
    (stack.repo / "skerry.yaml").unlink()
    git(stack.repo, "init", "-q", "-b", "main")
    stack.commit("no fleet file")
    try:
        hub = stack.start_hub()
        wait_for(lambda: error_lines(hub.log_tail(200), "skerry.yaml: not found"), 20, "the hub to name skerry.yaml", hub)
        assert hub.alive(), "a missing fleet file must not crash the hub"
    finally:
        stack.stop()


def test_an_agent_with_a_certificate_from_another_ca_is_refused_and_names_the_hub(kubeconfig, tmp_path):
    stack = Stack(tmp_path / "real", kubeconfig)
    stranger = Stack(tmp_path / "stranger", kubeconfig)  # its own CA: same names, untrusted issuer
    try:
        stack.start_sealer()
        stack.seed_repo()
        stack.start_hub()
        files = stranger.identity("oslo-dev", tls.ROLE_AGENT)
        # the stranger trusts the real hub's CA (so it can see who refuses it) but holds a foreign cert
        shutil.copyfile(stack.pki_dir / "ca.crt", files.ca)
        stranger.hub_address, stranger.sealer_address = stack.hub_address, stack.sealer_address
        stranger.trust_root = stack.trust_root
        agent = stranger.start_agent("oslo-dev")
        wait_for(lambda: error_lines(agent.log_tail(200), stack.hub_address, "certificate"), 30,
                 "the agent to name the hub and the certificate problem", agent)
        assert agent.alive()
        status = agent.status()
        assert not status or not status.get("applied_digest"), json.dumps(status)
    finally:
        stranger.stop()
        stack.stop()
