"""Stripe's official Python library against the simulator.

The library auto-paginates with its own cursor logic; the ids it yields must be exactly the simulator's
ground truth, in Stripe's order. This pins the simulator's list semantics to what a real client expects.
"""

import json
import os
import subprocess
import urllib.request

import pytest
import stripe

SIM_BIN = os.environ.get("STRIPE_SIM_BIN", "")


@pytest.fixture(scope="module")
def sim():
    if not SIM_BIN or not os.access(SIM_BIN, os.X_OK):
        pytest.fail(f"STRIPE_SIM_BIN must name the built stripe-sim binary (got {SIM_BIN!r}); run tests/run")
    proc = subprocess.Popen(
        [SIM_BIN, "--profile", "small", "--rate-limit", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(proc.stdout.readline())
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def truth_ids(info, account, mode, resource):
    url = f"{info['base_url']}/_sim/truth?account={account}&mode={mode}&resource={resource}"
    with urllib.request.urlopen(url) as resp:
        data = json.load(resp)["data"]
    # Ground truth is in creation order; lists are newest first.
    return [o["id"] for o in reversed(data) if not o["deleted"]]


def secret_key(info, account, mode):
    return next(
        k["key"]
        for k in info["keys"]
        if k["account"] == account and k["mode"] == mode and k["kind"] == "secret"
    )


@pytest.mark.parametrize("mode", ["test", "live"])
@pytest.mark.parametrize("resource,cls", [("charges", "Charge"), ("customers", "Customer")])
def test_auto_pagination_yields_ground_truth(sim, mode, resource, cls):
    account = sim["accounts"][0]["id"]
    stripe.api_key = secret_key(sim, account, mode)
    stripe.api_base = sim["base_url"]
    stripe.max_network_retries = 0
    listed = [obj.id for obj in getattr(stripe, cls).list(limit=37).auto_paging_iter()]
    expected = truth_ids(sim, account, mode, resource)
    assert len(expected) > 100
    assert listed == expected


def test_errors_raise_the_libraries_exceptions(sim):
    stripe.api_base = sim["base_url"]
    stripe.api_key = "sk_test_not_a_key_of_the_simulator"
    with pytest.raises(stripe.error.AuthenticationError):
        stripe.Charge.list()
    account = sim["accounts"][0]["id"]
    stripe.api_key = secret_key(sim, account, "test")
    with pytest.raises(stripe.error.InvalidRequestError) as err:
        stripe.Charge.list(limit=101)
    assert err.value.param == "limit"
