"""The simulator for the Python tests: starting its binary, and reading its ground truth and keys."""

import json
import os
import subprocess
import urllib.request

import pytest

SIM_BIN = os.environ.get("STRIPE_SIM_BIN", "")


def start(profile="small"):
    """Starts the simulator without rate limits; returns (process, its startup info)."""
    if not SIM_BIN or not os.access(SIM_BIN, os.X_OK):
        pytest.fail(f"STRIPE_SIM_BIN must name the built stripe-sim binary (got {SIM_BIN!r}); run tests/run")
    proc = subprocess.Popen(
        [SIM_BIN, "--profile", profile, "--rate-limit", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, json.loads(proc.stdout.readline())


def stop(proc):
    proc.terminate()
    proc.wait(timeout=10)


def truth_objects(info, account, mode, resource):
    """Every object of `resource` (its list path, `checkout/sessions`) that is not deleted, in creation order."""
    url = f"{info['base_url']}/_sim/truth?account={account}&mode={mode}&resource={resource}"
    with urllib.request.urlopen(url) as resp:
        return [o for o in json.load(resp)["data"] if not o["deleted"]]


def truth_ids(info, account, mode, resource):
    """The ids of `truth_objects`, newest first (the order of Stripe's lists)."""
    return [o["id"] for o in reversed(truth_objects(info, account, mode, resource))]


def secret_key(info, account, mode):
    return next(
        k["key"]
        for k in info["keys"]
        if k["account"] == account and k["mode"] == mode and k["kind"] == "secret"
    )
