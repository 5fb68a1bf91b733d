"""A widely used open-source Stripe extractor (singer-io's tap-stripe) against the simulator.

The extractor discovers its streams, selects all of them and syncs one account from the start of its
history: it must run to the end, and every stream must bring exactly the simulator's objects. It asks for
includable properties (`expand[]=data.refunds`, `data.plan.tiers`, …), retrieves the account, pages by
`created` windows and reads events, so it exercises what a client written without the simulator in
mind sends.
"""

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from simulator import secret_key, truth_objects

EXTRACTOR_PYTHON = os.environ.get("STRIPE_EXTRACTOR_PYTHON", "")
HARNESS = Path(__file__).with_name("tap_stripe_harness.py")

# The extractor's stream → the simulator's resource (its list path).
STREAMS = {
    "charges": "charges",
    "customers": "customers",
    "plans": "plans",
    "payment_intents": "payment_intents",
    "invoices": "invoices",
    "invoice_items": "invoiceitems",
    "coupons": "coupons",
    "subscriptions": "subscriptions",
    "balance_transactions": "balance_transactions",
    "payouts": "payouts",
    "disputes": "disputes",
    "products": "products",
    "transfers": "transfers",
}


def tap(base_url, tmp_path, *args):
    if not EXTRACTOR_PYTHON or not os.access(EXTRACTOR_PYTHON, os.X_OK):
        pytest.fail(
            f"STRIPE_EXTRACTOR_PYTHON must name the Python of a venv with tests/extractors/requirements.txt "
            f"(got {EXTRACTOR_PYTHON!r}); run tests/run"
        )
    run = subprocess.run(
        [EXTRACTOR_PYTHON, str(HARNESS), base_url, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"tap-stripe {args[0]} failed:\n{run.stderr[-4000:]}"
    return run.stdout


def test_tap_stripe_syncs_every_stream_to_ground_truth(sim, tmp_path):
    account = sim["accounts"][0]["id"]
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "client_secret": secret_key(sim, account, "test"),
                "account_id": account,
                "start_date": "2015-01-01T00:00:00Z",
            }
        )
    )
    catalog = json.loads(tap(sim["base_url"], tmp_path, "--config", str(config), "--discover"))
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if not entry["breadcrumb"]:
                entry["metadata"]["selected"] = True
    selected = tmp_path / "catalog.json"
    selected.write_text(json.dumps(catalog))
    out = tap(sim["base_url"], tmp_path, "--config", str(config), "--catalog", str(selected))

    records = defaultdict(set)
    for line in out.splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            records[message["stream"]].add(message["record"]["id"])
    assert set(STREAMS) <= {s["tap_stream_id"] for s in catalog["streams"]}
    for stream, resource in STREAMS.items():
        expected = {o["id"] for o in truth_objects(sim, account, "test", resource)}
        assert records[stream] == expected, f"{stream}: {len(records[stream])} records, {len(expected)} objects"
    assert sum(len(ids) for ids in records.values()) > 1000, {k: len(v) for k, v in records.items()}
    print({k: len(v) for k, v in records.items()}, file=sys.stderr)
