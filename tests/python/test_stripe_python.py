"""Stripe's official Python library against the simulator.

The library auto-paginates with its own cursor logic; the ids it yields must be exactly the simulator's
ground truth, in Stripe's order. This pins the simulator's list semantics to what a real client expects.
"""

import pytest
import stripe
from simulator import secret_key, truth_ids, truth_objects

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


def test_includable_properties_come_only_when_expanded(sim):
    """A charge's refunds are left out since API 2022-11-15 and come back with `expand[]=data.refunds`,
    as the first page of the charge's refunds; extractors ask for them on every page."""
    account = sim["accounts"][0]["id"]
    stripe.api_key = secret_key(sim, account, "test")
    stripe.api_base = sim["base_url"]
    refunds = {}
    for r in truth_objects(sim, account, "test", "refunds"):
        refunds.setdefault(r["object"]["charge"], []).append(r["id"])
    assert refunds, "the profile has refunds"
    plain = stripe.Charge.list(limit=100)
    assert all("refunds" not in c for c in plain.data)
    seen = 0
    for charge in stripe.Charge.list(limit=100, expand=["data.refunds"]).auto_paging_iter():
        ids = [r.id for r in charge.refunds.data]
        assert ids == list(reversed(refunds.get(charge.id, [])))[:10]
        assert charge.refunds.url == f"/v1/charges/{charge.id}/refunds"
        seen += len(ids)
    assert seen > 0
    customers = stripe.Customer.list(limit=3, expand=["data.sources", "data.subscriptions", "data.tax_ids"])
    assert all(c.tax_ids.object == "list" for c in customers.data)
    subs = stripe.Subscription.list(limit=3, status="all", expand=["data.plan.tiers"])
    assert len(subs.data) == 3
    with pytest.raises(stripe.error.InvalidRequestError) as err:
        stripe.Charge.list(expand=["data.amount"])
    assert "cannot be expanded" in str(err.value)


@pytest.mark.parametrize(
    "resource,cls",
    [("checkout/sessions", "checkout.Session"), ("quotes", "Quote"), ("payment_links", "PaymentLink")],
)
def test_line_items_page_whole_and_come_with_their_parents_when_expanded(sim, resource, cls):
    """A Checkout session's, quote's or payment link's line items: paged whole with the library's own
    `list_line_items`, and the first 10 with the parents' list when asked for (`expand[]=data.line_items`)."""
    account = sim["accounts"][0]["id"]
    stripe.api_key = secret_key(sim, account, "test")
    stripe.api_base = sim["base_url"]
    owner = stripe
    for part in cls.split("."):
        owner = getattr(owner, part)
    parents = {o["id"]: [i["id"] for i in o["object"]["line_items"]["data"]]
               for o in truth_objects(sim, account, "test", resource)}
    longest = max(parents, key=lambda p: len(parents[p]))
    assert len(parents[longest]) > 10, "one parent has more than a page"
    paged = [i.id for i in owner.list_line_items(longest, limit=4).auto_paging_iter()]
    assert paged == parents[longest]
    listed = 0
    for parent in owner.list(limit=100, expand=["data.line_items"]).auto_paging_iter():
        want = parents[parent.id]
        assert [i.id for i in parent.line_items.data] == want[:10]
        assert parent.line_items.has_more == (len(want) > 10)
        listed += 1
    assert listed == len(parents)
    assert all("line_items" not in p for p in owner.list(limit=100).data)
