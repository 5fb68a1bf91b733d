#!/usr/bin/env python3
"""Generate the column catalog (catalog.json) from Stripe's OpenAPI spec.

Usage: python3 shared/pipeline/catalog/generate.py [SPEC_PATH] [OUT_PATH]

The defaults are resolved relative to this file, so the command works from any directory:
SPEC_PATH = <repo>/../shared/stripe-openapi/spec3.v524.2023-08-16.yaml, OUT_PATH = catalog.json next to this file.
Same spec in, byte-identical catalog out. The rules are described in README.md next to this file.
"""

import hashlib
import itertools
import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
DEFAULT_SPEC = os.path.normpath(
    os.path.join(REPO, "..", "shared", "stripe-openapi", "spec3.v524.2023-08-16.yaml")
)
DEFAULT_OUT = os.path.join(HERE, "catalog.json")

# PostgreSQL truncates identifiers to 63 bytes (Redshift: 127), which made two deep paths one column.
MAX_IDENTIFIER = 63


def fit_identifier(name):
    """`name`, or if it is longer than MAX_IDENTIFIER, its first 54 characters, `_` and 8 hex digits of
    its SHA-1: the same short name in every warehouse, and still unique."""
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[:MAX_IDENTIFIER - 9]}_{digest}"


# --------------------------------------------------------------------------------------------------
# Configuration: one entry per dataset, in output order.
#
#   name            dataset name
#   list_path       the list endpoint (GET) that backfills it
#   object          the object schema in components/schemas (also the `object` value of its items)
#   table           main table name (default: name)
#   singular        singular of the main table, for `<singular>_id` (default: table minus trailing "s")
#   default_params  query parameters always sent to the list endpoint, as [name, value] pairs
#   events          extra event types whose data.object is this object: "a.b.*" is a prefix, else exact.
#                   Types "<object>.<action>" (no further dot) are always included.
#   no_events       the dataset's changes reach no feed the engine reads (event_types stays empty, so it
#                   is listed again on the snapshot interval and its new objects on the unannounced one)
#   every_run       without events, its new objects are still asked for on every run (balance
#                   transactions: the money tables; connected accounts: every other dataset waits for them)
#   sigma_columns   extra main-table columns of Stripe's Data Pipeline that the API object lacks
#   children        child tables: name, source (path of the array or list field), parent_key,
#                   nested_list_path (for list objects: endpoint paging the full list, {id} = parent id),
#                   item_schema (checked against the spec; one member of a polymorphic list's items),
#                   object_filter (only the items whose `object` is this: a polymorphic list split in two)
# --------------------------------------------------------------------------------------------------
DATASETS = [
    {
        "name": "balance_transactions",
        "list_path": "/v1/balance_transactions",
        "object": "balance_transaction",
        "every_run": True,
        # Columns of Stripe's Data Pipeline tables that the API object does not carry. They are null until
        # the engine derives them (automatic_transfer_id: the automatic payout that paid the transaction out).
        "sigma_columns": [{"name": "automatic_transfer_id", "type": "string", "path": ["automatic_transfer_id"]}],
        "children": [
            {
                "name": "balance_transaction_fee_details",
                "source": ["fee_details"],
                "parent_key": "balance_transaction_id",
                "nested_list_path": None,
                "item_schema": "fee",
            }
        ],
    },
    {"name": "charges", "list_path": "/v1/charges", "object": "charge"},
    {"name": "customers", "list_path": "/v1/customers", "object": "customer"},
    {"name": "payment_intents", "list_path": "/v1/payment_intents", "object": "payment_intent"},
    {
        "name": "refunds",
        "list_path": "/v1/refunds",
        "object": "refund",
        "events": ["charge.refund.updated"],
    },
    {
        "name": "disputes",
        "list_path": "/v1/disputes",
        "object": "dispute",
        "events": ["charge.dispute.*"],
    },
    {"name": "payouts", "list_path": "/v1/payouts", "object": "payout"},
    {
        "name": "transfers",
        "list_path": "/v1/transfers",
        "object": "transfer",
        "children": [
            {
                "name": "transfer_reversals",
                "source": ["reversals"],
                "parent_key": "transfer_id",
                "nested_list_path": "/v1/transfers/{id}/reversals",
                "item_schema": "transfer_reversal",
            }
        ],
    },
    {
        "name": "invoices",
        "list_path": "/v1/invoices",
        "object": "invoice",
        "children": [
            {
                "name": "invoice_line_items",
                "source": ["lines"],
                "parent_key": "invoice_id",
                "nested_list_path": "/v1/invoices/{id}/lines",
                "item_schema": "line_item",
            }
        ],
    },
    {
        "name": "invoiceitems",
        "list_path": "/v1/invoiceitems",
        "object": "invoiceitem",
        "table": "invoice_items",
    },
    {
        "name": "subscriptions",
        "list_path": "/v1/subscriptions",
        "object": "subscription",
        # The endpoint hides canceled subscriptions unless asked for all of them.
        "default_params": [["status", "all"]],
        "events": ["customer.subscription.*"],
        "children": [
            {
                "name": "subscription_items",
                "source": ["items"],
                "parent_key": "subscription_id",
                "nested_list_path": "/v1/subscription_items?subscription={id}",
                "item_schema": "subscription_item",
            }
        ],
    },
    {"name": "prices", "list_path": "/v1/prices", "object": "price"},
    {"name": "products", "list_path": "/v1/products", "object": "product"},
    {"name": "coupons", "list_path": "/v1/coupons", "object": "coupon"},
    {
        "name": "credit_notes",
        "list_path": "/v1/credit_notes",
        "object": "credit_note",
        "children": [
            {
                "name": "credit_note_line_items",
                "source": ["lines"],
                "parent_key": "credit_note_id",
                "nested_list_path": "/v1/credit_notes/{id}/lines",
                "item_schema": "credit_note_line_item",
            }
        ],
    },
    {"name": "setup_intents", "list_path": "/v1/setup_intents", "object": "setup_intent"},
    {
        "name": "application_fees",
        "list_path": "/v1/application_fees",
        "object": "application_fee",
        "children": [
            {
                "name": "application_fee_refunds",
                "source": ["refunds"],
                "parent_key": "fee_id",
                "nested_list_path": "/v1/application_fees/{id}/refunds",
                "item_schema": "fee_refund",
            }
        ],
    },
    {
        # A Connect platform's connected accounts (synced only for accounts configured with
        # `connect = true`). Stripe's Data Pipeline calls the table `connected_accounts`. The
        # `account.*` events of a connected account are in that account's own feed, not in the
        # platform's, so the platform's feed never sees them: new accounts come with each run's list
        # of new objects, changes and deauthorizations with the snapshot.
        "name": "accounts",
        "list_path": "/v1/accounts",
        "object": "account",
        "table": "connected_accounts",
        "no_events": True,
        "every_run": True,
        # An account embeds its external accounts (bank accounts and debit cards, mixed in one list, the
        # first 10), as Sigma's two tables split them: each keeps the items of its `object`.
        "children": [
            {
                "name": f"external_account_{kind}s",
                "source": ["external_accounts"],
                "parent_key": "account_id",
                "nested_list_path": "/v1/accounts/{id}/external_accounts",
                "item_schema": kind,
                "object_filter": kind,
            }
            for kind in ["bank_account", "card"]
        ],
    },
]

# Every other top-level list endpoint of the spec is a dataset too, with the defaults (its table named as
# `table_name` says), except these, each with the reason. The README lists them.
EXCLUDED = {
    "/v1/events": "the change feed: the engine reads it for every account and mode and applies each event to its dataset",
    "/v1/balance/history": "the older path of /v1/balance_transactions (dataset balance_transactions)",
    "/v1/linked_accounts": "the older path of /v1/financial_connections/accounts (dataset financial_connections_accounts)",
    "/v1/subscription_items": "the child table subscription_items of subscriptions (the list needs a subscription id)",
    "/v1/credit_notes/preview/lines": "a preview computed from request parameters, not stored objects",
    "/v1/invoices/upcoming/lines": "a preview computed from request parameters, not stored objects",
    "/v1/test_helpers/test_clocks": "a test helper (test mode only); objects advanced by a clock name it in their test_clock_id",
    "/v1/apps/secrets": "Stripe Apps' secret store: its payloads are secrets, which never leave Stripe through this pipeline",
    "/v1/country_specs": "Stripe-wide reference data, the same for every account",
    "/v1/exchange_rates": "Stripe-wide reference data, the same for every account and replaced continuously",
    "/v1/tax_codes": "Stripe-wide reference data, the same for every account",
    "/v1/reporting/report_types": "Stripe-wide reference data, the same for every account",
}

# Lists whose required parameter names a parent that is itself a dataset (Treasury's money movements need
# their financial account: `/v1/treasury/transactions?financial_account=fa_…`). Unlike a fetched child
# table, such a list is a dataset of its own: its objects have ids, `created` and events of their own, so
# the change feed keeps them current one object at a time. Only its lists go per parent: the engine pages
# the parent's list for the ids and gives each parent segments of its own. Keyed by the parameter; the
# value is the parent dataset's list path.
PARENT_PARAMS = {
    "financial_account": "/v1/treasury/financial_accounts",
}

# Lists that exist only per parent: a required parameter names it (`/v1/setup_attempts?setup_intent=…`), or
# the list sits under the parent's path (`/v1/customers/{customer}/tax_ids`, `NESTED_LISTS`). Each is a
# child table of the parent's dataset, paged for every parent object the engine reads (`fetch`), so its
# rows are replaced whenever the parent is; an event about one of its objects is a change of its parent.
# Keyed by the parent's list path.
FETCHED_CHILDREN = {
    "/v1/setup_intents": [
        # A setup intent without a `latest_attempt` has no attempts: only the others are paged (`when`).
        {"name": "setup_attempts", "list": "/v1/setup_attempts", "param": "setup_intent",
         "parent_key": "setup_intent_id", "when": "latest_attempt"},
    ],
    "/v1/radar/value_lists": [
        {"name": "radar_value_list_items", "list": "/v1/radar/value_list_items", "param": "value_list",
         "parent_key": "value_list_id"},
    ],
    # A customer's tax ids are includable: the customers' lists ask for them (`expand[]=data.tax_ids`),
    # so only a customer read without them (a changed one from the feed) costs a call (`expand`).
    "/v1/customers": [
        {"name": "customer_tax_ids", "list": "/v1/customers/{customer}/tax_ids", "parent_key": "customer_id",
         "expand": True},
    ],
    # A connected account's persons and capabilities (Sigma has no table of either; its
    # `account_capabilities_v2` is one row per account, which the account's `capabilities` column holds).
    # A platform may read the persons of its Custom accounts only (Stripe refuses the others' once they
    # start onboarding), so only those are paged (`when` … `equals`). The capabilities' list is not
    # paged; `key` is where the engine puts it, since the account's own `capabilities` is their statuses.
    "/v1/accounts": [
        {"name": "account_persons", "list": "/v1/accounts/{account}/persons", "parent_key": "account_id",
         "when": "type", "equals": "custom"},
        {"name": "account_capabilities", "list": "/v1/accounts/{account}/capabilities",
         "parent_key": "account_id", "key": "account_capabilities"},
    ],
}

# Lists under their parent's path whose items name no parent (an `item` of a Checkout session): the parent
# owns them, as an invoice owns its lines. All three are includable, so the parents' lists ask for them
# (`expand`) and only a list longer than a page, or a parent read on its own, costs a call. Their items
# have no events: a change of the list is a change of the parent. Keyed by the parent's list path; the
# table names follow Stripe Sigma where it has one (`checkout_line_items`).
OWNED_LISTS = {
    "/v1/checkout/sessions": {"name": "checkout_line_items", "list": "/v1/checkout/sessions/{session}/line_items",
                              "parent_key": "checkout_session_id"},
    "/v1/quotes": {"name": "quote_line_items", "list": "/v1/quotes/{quote}/line_items", "parent_key": "quote_id"},
    "/v1/payment_links": {"name": "payment_link_line_items", "list": "/v1/payment_links/{payment_link}/line_items",
                          "parent_key": "payment_link_id"},
}

# Lists under their parent's path, for the simulator and the catalog: the field of an item that names its
# parent; the event Stripe emits on the parent when an item is added (`touch`: the parent's balance or
# embedded list changed), where the item has no creation event of its own; the prefix of the item's own
# events where it is not the object type (`customer.tax_id.created`); whether the parent embeds the list's
# first page by default (`embedded`: a transfer's `reversals`).
NESTED_LISTS = {
    "/v1/customers/{customer}/balance_transactions": {"field": "customer", "touch": "customer.updated"},
    "/v1/customers/{customer}/cash_balance_transactions": {"field": "customer"},
    "/v1/customers/{customer}/tax_ids": {"field": "customer", "event_prefix": "customer.tax_id"},
    "/v1/transfers/{id}/reversals": {"field": "transfer", "touch": "transfer.updated", "embedded": True},
    "/v1/application_fees/{id}/refunds": {"field": "fee", "touch": "application_fee.refunded",
                                          "event_prefix": "application_fee.refund", "embedded": True},
    "/v1/accounts/{account}/persons": {"field": "account"},
    "/v1/accounts/{account}/capabilities": {"field": "account"},
}

# Stripe Sigma's table names (a community reference of Sigma's schema, CC0: see README.md).
SIGMA_SCHEMA = os.path.join(HERE, "sigma-schema.json")

# How `stripe-pipeline tables` groups datasets: by product. Datasets of a product's own path
# (`/v1/issuing/...`) are grouped by it; the others are named here.
GROUPS = {
    "payments": ["charges", "customers", "payment_intents", "refunds", "disputes", "setup_intents", "payment_methods",
                 "payment_links", "reviews", "payment_method_domains", "apple_pay_domains"],
    "billing": ["invoices", "invoiceitems", "subscriptions", "subscription_schedules", "plans", "prices",
                "products", "coupons", "promotion_codes", "quotes", "credit_notes", "tax_rates",
                "shipping_rates"],
    "balance": ["balance_transactions", "payouts", "transfers", "topups"],
    "connect": ["accounts", "application_fees"],
    "files": ["files", "file_links"],
    "developers": ["webhook_endpoints"],
}


def table_name(path, sigma, taken):
    """The table of an endpoint's dataset: Stripe Sigma's name when Sigma has a table for it (the path
    with `/` as `_`, or its last segment: `early_fraud_warnings`) that no other dataset has, otherwise
    the path with `/` as `_` (`financial_connections_accounts`: Sigma's `accounts` are Connect's)."""
    rest = path[len("/v1/"):]
    candidates = [rest.replace("/", "_"), rest.split("/")[-1]]
    return next((c for c in candidates if c in sigma and c not in taken), candidates[0])


def group_of(ds):
    for group, names in GROUPS.items():
        if ds["name"] in names:
            return group
    segments = ds["list_path"][len("/v1/"):].split("/")
    if len(segments) > 1:
        return segments[0]
    raise GenerateError(f"{ds['name']}: no group; add it to GROUPS")


def per_parent_of(path, op):
    """How the list at `path` gets its one required parameter from a parent dataset (`PARENT_PARAMS`), or
    None when it needs none."""
    required = [p["name"] for p in query_params(op) if p.get("required")]
    if not required:
        return None
    if len(required) > 1 or required[0] not in PARENT_PARAMS:
        raise GenerateError(
            f"{path} needs {required}: name its parent in PARENT_PARAMS, configure it, or exclude it with a reason"
        )
    return {"param": required[0], "list_path": PARENT_PARAMS[required[0]]}


def all_datasets(spec, sigma):
    """DATASETS, then a dataset with the defaults for every other top-level list endpoint not in EXCLUDED."""
    out = list(DATASETS)
    configured = {d["list_path"] for d in DATASETS}
    taken = {d["name"] for d in DATASETS} | {d.get("table", d["name"]) for d in DATASETS}
    for path in EXCLUDED:
        if path in configured:
            raise GenerateError(f"{path} is both configured and excluded")
    fetched = {c["list"] for children in FETCHED_CHILDREN.values() for c in children}
    for path, op, _item, obj in top_level_lists(spec):
        if path in configured or path in EXCLUDED or path in fetched:
            continue
        per_parent_of(path, op)
        name = table_name(path, sigma, taken)
        taken.add(name)
        out.append({"name": name, "list_path": path, "object": obj})
    names = [d["name"] for d in out]
    if len(set(names)) != len(names):
        raise GenerateError(f"dataset names clash: {sorted(n for n in names if names.count(n) > 1)}")
    return out


# Events that announce a new object of a type without a `<object>.created` event: a charge is announced
# by its outcome, a review by its opening, a payment method by its attachment to a customer. A dataset
# with neither is listed for new objects on its own interval (`announces_creation` false).
CREATION_EVENTS = {
    "charge": ["charge.succeeded", "charge.failed", "charge.pending"],
    "review": ["review.opened"],
    "payment_method": ["payment_method.attached"],
}


def creation_events(obj, all_events):
    """The event types that announce a new object of type `obj`."""
    prefix = event_prefix(obj, all_events)
    found = [e for e in CREATION_EVENTS.get(obj, []) if e in all_events]
    if f"{prefix}.created" in all_events:
        found.insert(0, f"{prefix}.created")
    return found


# A `.deleted` event that is not a deletion.
NOT_DELETIONS = {"customer.subscription.deleted"}

# Columns the engine adds to every table; never listed.
ENGINE_COLUMNS = {"merchant_id", "batch_timestamp", "deleted"}
# A nested object with more properties than this is kept as one json column.
MAX_FLATTEN_PROPERTIES = 25
# Longest column path (levels of nesting, the property itself included).
MAX_PATH_DEPTH = 4
# How deep the search for Stripe Sigma's column names goes (`sigma_columns`).
SIGMA_MAX_PATH_DEPTH = 6

# Sanity checks on the output: table -> {column: (type, reference)}; and columns that must be absent.
EXPECT = {
    "charges": {
        "id": ("string", False),
        "amount": ("int64", False),
        "created": ("timestamp", False),
        "customer_id": ("string", True),
        "balance_transaction_id": ("string", True),
        "outcome_type": ("string", False),
        "billing_details_address_city": ("string", False),
        "livemode": ("bool", False),
        "card_brand": ("string", False),
        "card_exp_year": ("int64", False),
        "payment_method_id": ("string", False),
    },
    "balance_transactions": {
        "fee": ("int64", False),
        "net": ("int64", False),
        "source_id": ("string", True),
        "available_on": ("timestamp", False),
    },
    "invoice_line_items": {
        "price_id": ("string", True),
        "period_start": ("timestamp", False),
    },
    "subscription_items": {
        "price_id": ("string", True),
        "created": ("timestamp", False),
        "plan_interval": ("string", False),
        "price_unit_amount": ("int64", False),
    },
    "disputes": {"evidence": ("json", False), "evidence_customer_name": ("string", False)},
    "subscriptions": {"discount_coupon_id": ("string", True), "discount_end": ("timestamp", False)},
}
EXPECT_ABSENT = {
    "subscriptions": ["items", "items_id"],
    "invoices": ["lines", "lines_id"],
    "charges": ["object", "metadata", "refunds"],
}

SCHEMA_PREFIX = "#/components/schemas/"
# A few Unix times lack `format: unix-time` in the spec (e.g. subscription_item.created); their description says so.
UNIX_TIME_DESCRIPTION = re.compile(r"seconds since the unix epoch|unix timestamp", re.IGNORECASE)


def warn(msg):
    print(f"warning: {msg}", file=sys.stderr)


class GenerateError(Exception):
    pass


class Spec:
    def __init__(self, doc):
        self.doc = doc
        self.schemas = doc["components"]["schemas"]
        self.paths = doc["paths"]

    def deref(self, s):
        """Follows $ref until a schema without one."""
        seen = 0
        while isinstance(s, dict) and "$ref" in s:
            ref = s["$ref"]
            if not ref.startswith(SCHEMA_PREFIX):
                raise GenerateError(f"unsupported $ref {ref!r}")
            s = self.schemas[ref[len(SCHEMA_PREFIX):]]
            seen += 1
            if seen > 50:
                raise GenerateError(f"$ref cycle at {ref!r}")
        return s

    def ref_name(self, s):
        ref = s.get("$ref", "")
        return ref[len(SCHEMA_PREFIX):] if ref.startswith(SCHEMA_PREFIX) else None


def is_null_member(m):
    return m.get("type") == "null" or m.get("enum") == [None]


def non_null_members(s):
    return [m for m in s["anyOf"] if not is_null_member(m)]


def is_list_object(s):
    """A Stripe list object: {object: "list", data: [...], has_more, url}."""
    props = s.get("properties") or {}
    obj = props.get("object") or {}
    return obj.get("enum") == ["list"] and {"data", "has_more", "url"} <= set(props)


def is_resource(s):
    """A full API resource: it has both an `id` and an `object` property."""
    props = s.get("properties") or {}
    return "id" in props and "object" in props


def is_map(s):
    return bool(s.get("additionalProperties")) and not s.get("properties")


def scalar_type(s):
    t = s.get("type")
    if t == "string":
        return "string"
    if t == "integer":
        if s.get("format") == "unix-time" or UNIX_TIME_DESCRIPTION.search(s.get("description") or ""):
            return "timestamp"
        return "int64"
    if t == "number":
        return "float64"
    if t == "boolean":
        return "bool"
    return None


def column(name, typ, path, reference=False, join=False):
    col = {"name": name, "type": typ, "path": list(path)}
    if reference:
        col["reference"] = True
    if join:
        col["join"] = True
    return col


class TableBuilder:
    """Flattens one object schema into columns."""

    def __init__(self, spec, table, kind, reserved, skip_paths, every_path=False):
        self.spec = spec
        # `every_path`: flatten without the limits, through embedded resources too, names unfitted and
        # clashes silent: the candidates for Stripe Sigma's names (`sigma_columns`), not a table.
        self.every_path = every_path
        self.table = table
        self.kind = kind
        self.reserved = set(reserved)
        self.skip_paths = {tuple(p) for p in skip_paths}
        self.columns = []
        self.names = set()
        self.found_skips = set()
        self.has_metadata = False

    def add(self, name, typ, path, reference=False, join=False):
        if self.every_path:
            if name not in self.names:
                self.names.add(name)
                self.columns.append(column(name, typ, path, reference, join))
            return
        name = fit_identifier(name)
        if name in self.reserved:
            warn(f"{self.table}: column {name!r} (path {path}) clashes with an engine column; dropped")
            return
        if name in self.names:
            warn(f"{self.table}: duplicate column {name!r} (path {path}); kept the first")
            return
        self.names.add(name)
        self.columns.append(column(name, typ, path, reference, join))

    def build(self, schema):
        s = self.spec.deref(schema)
        props = s.get("properties") or {}
        keys = list(props)
        if "id" in keys:
            keys.remove("id")
            keys.insert(0, "id")
        for key in keys:
            if key == "object":
                continue
            prop = props[key]
            if self.kind == "main" and key == "metadata" and is_map(self.spec.deref(prop)):
                self.has_metadata = True
                continue
            self.property(key, prop, (key,))
        return self.columns

    def property(self, name, p, path):
        """Emits the column(s) for property schema `p` named `name` at `path`."""
        if path in self.skip_paths:
            self.found_skips.add(path)
            return
        spec = self.spec
        while True:
            if "anyOf" in p:
                members = non_null_members(p)
                if "x-expansionResources" in p and any(m.get("type") == "string" for m in members):
                    self.add(f"{name}_id", "string", path, reference=True)
                    return
                if len(members) == 1:
                    p = members[0]
                    continue
                types = {scalar_type(spec.deref(m)) for m in members}
                if len(types) == 1 and None not in types:
                    self.add(name, types.pop(), path)
                    return
                self.add(name, "json", path)  # polymorphic
                return
            if "$ref" in p:
                target = spec.deref(p)
                if is_resource(target) and not is_list_object(target):
                    self.add(f"{name}_id", "string", path, reference=True)
                    if not self.every_path:
                        return
                p = target
                continue
            break

        st = scalar_type(p)
        if st is not None:
            self.add(name, st, path)
            return
        t = p.get("type")
        if t == "array":
            if self.item_is_scalar(p.get("items") or {}):
                self.add(name, "string", path, join=True)
            else:
                self.add(name, "json", path)
            return
        if is_list_object(p):
            return  # a nested list without a configured child table: no column
        props = p.get("properties") or {}
        if props:
            if is_resource(p):
                self.add(f"{name}_id", "string", path, reference=True)
                if not self.every_path:
                    return
            own = [k for k in props if k != "object"]
            if self.every_path:
                if len(path) + 1 > SIGMA_MAX_PATH_DEPTH:
                    return
            elif len(own) > MAX_FLATTEN_PROPERTIES or len(path) + 1 > MAX_PATH_DEPTH:
                self.add(name, "json", path)
                return
            for key in own:
                self.property(f"{name}_{key}", props[key], path + (key,))
            return
        # A map (additionalProperties), an object without declared properties, or an untyped value.
        self.add(name, "json", path)

    def item_is_scalar(self, items):
        """Array items that are scalars, or ids of expandable resources (never expanded by the engine)."""
        s = items
        while True:
            if "anyOf" in s:
                members = non_null_members(s)
                if "x-expansionResources" in s and any(m.get("type") == "string" for m in members):
                    return True
                if len(members) == 1:
                    s = members[0]
                    continue
                return all(scalar_type(self.spec.deref(m)) for m in members)
            if "$ref" in s:
                s = self.spec.deref(s)
                continue
            return scalar_type(s) is not None


def list_operation(spec, path):
    item = spec.paths.get(path)
    if not item or "get" not in item:
        raise GenerateError(f"no GET operation at {path} in the spec")
    return item["get"]


def list_item_schema(spec, op, path):
    """The schema name of the items returned by a list operation (a list of the names, for polymorphic
    items: an account's external accounts)."""
    try:
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        data = spec.deref(schema)["properties"]["data"]
        if "anyOf" in data["items"]:
            return [spec.ref_name(m) for m in data["items"]["anyOf"]]
        return spec.ref_name(data["items"])
    except (KeyError, TypeError):
        raise GenerateError(f"{path}: cannot find the list response's data items") from None


def query_params(op):
    return [p for p in op.get("parameters", []) if p.get("in") == "query"]


def check_nested_list_path(spec, nested, item_schema, table):
    """The nested list endpoint must exist and return items of the child's schema."""
    base, _, query = nested.partition("?")
    candidates = []
    for path in spec.paths:
        segs, want = path.split("/"), base.split("/")
        if len(segs) == len(want) and all(
            w == s or (w == "{id}" and s.startswith("{") and s.endswith("}")) for w, s in zip(want, segs)
        ):
            candidates.append(path)
    if len(candidates) != 1:
        raise GenerateError(f"{table}: nested_list_path {nested!r} matches {candidates} in the spec")
    op = list_operation(spec, candidates[0])
    got = list_item_schema(spec, op, candidates[0])
    if got != item_schema:
        raise GenerateError(f"{table}: {nested} returns {got!r}, expected {item_schema!r}")
    names = {p["name"] for p in query_params(op)}
    for pair in filter(None, query.split("&")):
        key = pair.split("=", 1)[0]
        if key not in names:
            raise GenerateError(f"{table}: {candidates[0]} has no query parameter {key!r}")


def event_types(spec):
    op = spec.paths["/v1/webhook_endpoints"]["post"]
    schema = op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    enum = spec.deref(schema)["properties"]["enabled_events"]["items"]["enum"]
    return sorted({e for e in enum if e != "*"})


def dataset_events(all_events, ds):
    obj = event_prefix(ds["object"], all_events)
    out = set()
    for e in all_events:
        rest = e[len(obj) + 1:] if e.startswith(obj + ".") else None
        if rest and "." not in rest:
            out.add(e)
    for pattern in ds.get("events", []):
        if pattern.endswith(".*"):
            matched = {e for e in all_events if e.startswith(pattern[:-1])}
        else:
            matched = {pattern} & set(all_events)
        if not matched:
            raise GenerateError(f"{ds['name']}: event pattern {pattern!r} matches no event type")
        out |= matched
    return sorted(out)


# Stripe Sigma's columns that are not a flattening of the API object's own names. Sigma's charges keep the
# card a charge was paid with under `card_*`, as the `source` card of older API versions held it; the payment
# method details and billing details hold the same facts in API 2023-08-16. Sigma's subscription items keep
# their `plan_*`: a plan is a recurring price (same id), and a subscription item's price is always recurring,
# so they are its price's. Table -> {Sigma column: path}.
PMD_CARD = ["payment_method_details", "card"]
SIGMA_ALIASES = {
    "subscription_items": {
        "plan_id": ["price"],
        "plan_amount": ["price", "unit_amount"],
        "plan_created": ["price", "created"],
        "plan_currency": ["price", "currency"],
        "plan_interval": ["price", "recurring", "interval"],
        "plan_interval_count": ["price", "recurring", "interval_count"],
        "plan_nickname": ["price", "nickname"],
        "plan_product_id": ["price", "product"],
    },
    # A Checkout line item's product is its price's.
    "checkout_line_items": {"product_id": ["price", "product"]},
    "charges": {
        **{f"card_{k}": PMD_CARD + [k] for k in
           ["brand", "country", "exp_month", "exp_year", "fingerprint", "funding", "last4", "network"]},
        "card_address_line1_check": PMD_CARD + ["checks", "address_line1_check"],
        "card_address_zip_check": PMD_CARD + ["checks", "address_postal_code_check"],
        "card_cvc_check": PMD_CARD + ["checks", "cvc_check"],
        "card_dynamic_last4": PMD_CARD + ["wallet", "dynamic_last4"],
        "card_tokenization_method": PMD_CARD + ["wallet", "type"],
        "card_name": ["billing_details", "name"],
        **{f"card_address_{k}": ["billing_details", "address", k] for k in
           ["city", "country", "line1", "line2", "state"]},
        "card_address_zip": ["billing_details", "address", "postal_code"],
        "payment_method_type": ["payment_method_details", "type"],
    },
}


def sigma_columns(spec, table, kind, schema, have, sigma):
    """Stripe Sigma's columns of `table` that the flattening left out, as extra columns: a deeper or wider
    flattening than the limits allow (`evidence_customer_name` of a dispute's evidence, kept whole as
    json too), an embedded resource's fields (`plan_interval` of a subscription item, `discount_coupon_id`),
    Sigma's spelling of a reference (`payment_method_id` for `payment_method`, `payment_intent` for
    `payment_intent_id`), or an entry of `SIGMA_ALIASES`. Returns the columns and, for the catalog's
    `SIGMA.md`, Sigma's columns that are still missing with the reason."""
    wanted = sigma.get(table)
    if not wanted:
        return [], []
    every = TableBuilder(spec, table, kind, set(), [], every_path=True)
    every.build(schema)
    by_name = {c["name"]: c for c in every.columns}
    by_path = {tuple(c["path"]): c for c in every.columns}
    aliases = SIGMA_ALIASES.get(table, {})
    found, missing = [], []
    for name, _sigma_type in wanted:
        if name in have or name in ENGINE_COLUMNS:
            continue
        if len(name) > MAX_IDENTIFIER:
            missing.append((name, "longer than 63 characters; the column has the shortened name"))
            continue
        if name in aliases:
            c = by_path.get(tuple(aliases[name]))
            if c is None:
                raise GenerateError(f"{table}: SIGMA_ALIASES path {aliases[name]} of {name!r} is not in the spec")
        elif name in by_name:
            c = by_name[name]
        elif name.endswith("_id") and by_name.get(name[:-3], {}).get("type") == "string":
            c = by_name[name[:-3]]
        elif by_name.get(f"{name}_id", {}).get("reference"):
            c = by_name[f"{name}_id"]
        else:
            missing.append((name, "not in API 2023-08-16"))
            continue
        found.append(column(name, c["type"], c["path"], c.get("reference", False), c.get("join", False)))
        have.add(name)
    return found, missing


def build_dataset(spec, ds, all_events, sigma):
    """The dataset's catalog entry, and Sigma's columns its tables lack (table -> [(column, reason)])."""
    name = ds["name"]
    obj = ds["object"]
    if obj not in spec.schemas:
        raise GenerateError(f"{name}: no schema {obj!r} in components/schemas")
    schema = spec.schemas[obj]
    obj_enum = ((schema.get("properties") or {}).get("object") or {}).get("enum")
    if obj_enum != [obj]:
        warn(f"{name}: schema {obj!r} has object enum {obj_enum}")
    op = list_operation(spec, ds["list_path"])
    items = list_item_schema(spec, op, ds["list_path"])
    if items != obj:
        raise GenerateError(f"{name}: {ds['list_path']} lists {items!r}, not {obj!r}")
    params = query_params(op)
    param_names = {p["name"] for p in params}
    for key, _ in ds.get("default_params", []):
        if key not in param_names:
            raise GenerateError(f"{name}: default param {key!r} is not a query parameter of {ds['list_path']}")

    table = ds.get("table", name)
    singular = ds.get("singular", table[:-1] if table.endswith("s") else table)
    children = ds.get("children", [])

    main = TableBuilder(spec, table, "main", ENGINE_COLUMNS, [c["source"] for c in children])
    columns = main.build(schema)
    extra, missing = sigma_columns(spec, table, "main", schema, set(main.names), sigma)
    sigma_missing = {table: missing} if missing else {}
    tables = [
        {
            "name": table,
            "kind": "main",
            "source": [],
            "parent_key": None,
            "nested_list_path": None,
            "columns": columns + extra + ds.get("sigma_columns", []),
        }
    ]
    if main.has_metadata:
        tables.append(
            {
                "name": f"{table}_metadata",
                "kind": "metadata",
                "source": ["metadata"],
                "parent_key": f"{singular}_id",
                "nested_list_path": None,
                "columns": [],
            }
        )
    built = [build_child(spec, schema, child, main, sigma) for child in children]
    for child in fetched_children(ds["list_path"]):
        if child.get("when") and child["when"] not in (schema.get("properties") or {}):
            raise GenerateError(f"{child['name']}: {obj} has no field {child['when']!r}")
        built.append(build_fetched_child(spec, child, sigma))
    for child_table, missing in built:
        tables.append(child_table)
        if missing:
            sigma_missing[child_table["name"]] = missing

    events = [] if ds.get("no_events") else dataset_events(all_events, ds)
    if ds.get("no_events"):
        # No feed the engine reads has their items' events either (a connected account's
        # `person.updated` is in its own feed): nothing to route to a parent.
        for t in tables:
            if t.get("item_object"):
                t["item_object"] = t["parent_field"] = None
    return {
        "name": name,
        "group": group_of(ds),
        "list_path": ds["list_path"],
        "object": obj,
        "required_params": [p["name"] for p in params if p.get("required")],
        "per_parent": per_parent_of(ds["list_path"], op),
        "default_params": [list(p) for p in ds.get("default_params", [])] + [
            ["expand[]", f"data.{c['list'].rsplit('/', 1)[1]}"]
            for c in fetched_children(ds["list_path"]) if c.get("expand")
        ],
        "created_filter": "created" in param_names,
        "new_objects_every_run": bool(ds.get("every_run")),
        "announces_creation": any(
            e.endswith(".created") or e in CREATION_EVENTS.get(obj, []) for e in events
        ),
        "event_types": events,
        "delete_events": [e for e in events if e.endswith(".deleted") and e not in NOT_DELETIONS],
        "tables": tables,
    }, sigma_missing


def build_child(spec, parent_schema, child, main, sigma):
    cname = child["name"]
    source = tuple(child["source"])
    if source not in main.found_skips:
        raise GenerateError(f"{cname}: source {list(source)} is not a property of {main.table}")
    s = parent_schema
    for key in source:
        s = spec.deref(s)
        s = (s.get("properties") or {}).get(key)
        if s is None:
            raise GenerateError(f"{cname}: no property {key!r} on the way to {list(source)}")
        while "anyOf" in s and len(non_null_members(s)) == 1:
            s = non_null_members(s)[0]
    s = spec.deref(s)
    if is_list_object(s):
        if not child.get("nested_list_path"):
            raise GenerateError(f"{cname}: {list(source)} is a list object; it needs a nested_list_path")
        items = s["properties"]["data"].get("items") or {}
    elif s.get("type") == "array":
        if child.get("nested_list_path"):
            raise GenerateError(f"{cname}: {list(source)} is a plain array; nested_list_path must be null")
        items = s.get("items") or {}
    else:
        raise GenerateError(f"{cname}: {list(source)} is neither an array nor a list object")
    if child.get("object_filter"):
        # A polymorphic list split by `object`: the table takes the member its filter names.
        members = [spec.ref_name(m) for m in items.get("anyOf", [])]
        if child.get("item_schema") not in members:
            raise GenerateError(f"{cname}: item_schema must be one of the polymorphic items {members}")
        if object_name(spec, spec.schemas[child["item_schema"]]) != child["object_filter"]:
            raise GenerateError(f"{cname}: {child['item_schema']} items are not `object: {child['object_filter']}`")
        if child.get("nested_list_path"):
            check_nested_list_path(spec, child["nested_list_path"], members, cname)
        items = {"$ref": SCHEMA_PREFIX + child["item_schema"]}
    item_schema = spec.ref_name(items)
    if child.get("item_schema") and item_schema != child["item_schema"]:
        raise GenerateError(f"{cname}: items are {item_schema!r}, expected {child['item_schema']!r}")
    if child.get("nested_list_path") and not child.get("object_filter"):
        check_nested_list_path(spec, child["nested_list_path"], item_schema, cname)
    own = own_parent_ref(spec, spec.deref(items), child["parent_key"])
    builder = TableBuilder(spec, cname, "child", ENGINE_COLUMNS | {child["parent_key"]}, own)
    columns = builder.build(items)
    extra, missing = sigma_columns(spec, cname, "child", items, builder.names | {child["parent_key"]}, sigma)
    table = {
        "name": cname,
        "kind": "child",
        "source": list(source),
        "parent_key": child["parent_key"],
        "nested_list_path": child.get("nested_list_path"),
    }
    if own:
        # Its items name their parent: an event about one (`application_fee.refund.updated`) reads the
        # parent again.
        table["item_object"] = object_name(spec, spec.deref(items))
        table["parent_field"] = own[0][0]
    table["columns"] = columns + extra
    if child.get("object_filter"):
        # The engine keeps the rows whose `object` is the filter's, so the column stays.
        table["object_filter"] = child["object_filter"]
        table["columns"].append({"name": "object", "type": "string", "path": ["object"]})
    return table, missing


def own_parent_ref(spec, item, parent_key):
    """The item's own reference to its parent (a reversal's `transfer`), as a path to skip: the engine
    fills the parent key with the same id."""
    field = parent_key[: -len("_id")]
    prop = (item.get("properties") or {}).get(field)
    if not parent_key.endswith("_id") or prop is None:
        return []
    probe = TableBuilder(spec, parent_key, "child", set(), [])
    probe.property(field, prop, (field,))
    return [[field]] if parent_key in probe.names else []


def fetched_children(list_path):
    """The lists paged per parent object of the dataset listed at `list_path`: `FETCHED_CHILDREN`, and
    its `OWNED_LISTS` entry (asked for with the parents' pages)."""
    owned = OWNED_LISTS.get(list_path)
    return FETCHED_CHILDREN.get(list_path, []) + ([dict(owned, expand=True, owned=True)] if owned else [])


def build_fetched_child(spec, child, sigma):
    """A child table of a list that exists only per parent (`FETCHED_CHILDREN`)."""
    cname, path = child["name"], child["list"]
    op = list_operation(spec, path)
    item_schema = list_item_schema(spec, op, path)
    if "param" in child:
        field = child["param"]
        if field not in [p["name"] for p in query_params(op) if p.get("required")]:
            raise GenerateError(f"{cname}: {field!r} is not a required parameter of {path}")
        nested = f"{path}?{field}={{id}}"
    elif child.get("owned"):
        field = None
        nested = re.sub(r"\{[a-z_]+\}", "{id}", path)
    else:
        if path not in NESTED_LISTS:
            raise GenerateError(f"{cname}: {path} is not in NESTED_LISTS")
        field = NESTED_LISTS[path]["field"]
        nested = re.sub(r"\{[a-z_]+\}", "{id}", path)
    check_nested_list_path(spec, nested, item_schema, cname)
    schema = spec.schemas[item_schema]
    if field is not None and field not in (schema.get("properties") or {}):
        raise GenerateError(f"{cname}: {item_schema} has no field {field!r} naming its parent")
    builder = TableBuilder(spec, cname, "child", ENGINE_COLUMNS | {child["parent_key"]},
                           own_parent_ref(spec, schema, child["parent_key"]))
    columns = builder.build(schema)
    extra, missing = sigma_columns(spec, cname, "child", schema, builder.names | {child["parent_key"]}, sigma)
    return {
        "name": cname,
        "kind": "child",
        # The key the engine puts the complete list under: the list's last path segment (the parent's
        # own property where it has one: a transfer's `reversals`).
        "source": [child.get("key", path.rsplit("/", 1)[1])],
        "parent_key": child["parent_key"],
        "nested_list_path": nested,
        "fetch": True,
        "expand": bool(child.get("expand")),
        "fetch_when": child.get("when"),
        "fetch_when_equals": child.get("equals"),
        # Owned items have no events of their own to route, and name no parent.
        "item_object": None if field is None else object_name(spec, schema),
        "parent_field": field,
        "columns": columns + extra,
    }, missing


# --------------------------------------------------------------------------------------------------
# The simulator's expansion table: for every schema, how each field named in its `x-expandableFields`
# can be expanded. The simulator (shared/stripe-sim) validates and applies `expand[]` from it.
# --------------------------------------------------------------------------------------------------
SIM_EXPANSIONS_OUT = os.path.join(REPO, "shared", "stripe-sim", "data", "expansions.json")

# Properties Stripe still returns (and lets you expand into) that the 2023-08-16 spec no longer lists:
# the deprecated `plan` of single-price subscriptions and of invoice items. Stripe accepts
# `expand[]=data.plan.tiers` on both lists, and widely used extractors send it.
HIDDEN_PROPERTIES = {
    "subscription": {"plan": {"object": "plan"}},
    "invoiceitem": {"plan": {"object": "plan"}},
}


def object_name(spec, schema):
    """The `object` value of a resource schema (`checkout.session`), or None."""
    obj = ((schema.get("properties") or {}).get("object") or {}).get("enum") or []
    return obj[0] if len(obj) == 1 else None


def expansion_of(spec, prop):
    """How one expandable property expands:
    {"ref": [objects]}   an id that becomes the object (one of these object types);
    {"list": [objects]}  a Stripe list object of items of these object types (included only when
                         expanded);
    {"object": schema}   an embedded object, expanded further inside;
    {"each": expansion}  an array whose every item expands as `expansion` says;
    {}                   a value that is returned as it is."""
    if "anyOf" in prop:
        members = non_null_members(prop)
        resources = prop.get("x-expansionResources", {}).get("oneOf", [])
        if any(m.get("type") == "string" for m in members) and resources:
            names = sorted({object_name(spec, spec.deref(r)) for r in resources} - {None})
            return {"ref": names}
        if len(members) == 1:
            return expansion_of(spec, members[0])
        return {}
    name = spec.ref_name(prop)
    target = spec.deref(prop)
    if is_list_object(target):
        items = target["properties"]["data"]["items"]
        members = non_null_members(items) if "anyOf" in items else [items]
        return {"list": sorted({object_name(spec, spec.deref(m)) for m in members} - {None})}
    if name:
        return {"object": name}
    if target.get("type") == "array" and target.get("items"):
        each = expansion_of(spec, target["items"])
        return {"each": each} if each else {}
    return {}


def sim_expansions(spec):
    out = {}
    for name in sorted(spec.schemas):
        schema = spec.schemas[name]
        props = schema.get("properties") or {}
        fields = {}
        for field in schema.get("x-expandableFields") or []:
            if field in props:
                fields[field] = expansion_of(spec, props[field])
        fields.update(HIDDEN_PROPERTIES.get(name, {}))
        if fields:
            out[name] = dict(sorted(fields.items()))
    return out


# --------------------------------------------------------------------------------------------------
# The simulator's resource table: every top-level list endpoint of the spec, with the facts a list,
# its filters, its events and its generated objects need. The simulator serves the ones it has no
# hand-written generator for from this table (shared/stripe-sim/src/resources.rs).
# --------------------------------------------------------------------------------------------------
SIM_RESOURCES_OUT = os.path.join(REPO, "shared", "stripe-sim", "data", "resources.json")
# Stripe's example objects for the same API version (the simulator's templates): their ids give the prefixes.
SIM_FIXTURES = os.path.join(REPO, "shared", "stripe-sim", "data", "fixtures3.2023-08-16.json")

# List endpoints the simulator does not serve from the table, with the reason.
SIM_SKIPPED = {
    "/v1/balance/history": "the older path of /v1/balance_transactions",
    "/v1/linked_accounts": "the older path of /v1/financial_connections/accounts",
    "/v1/credit_notes/preview/lines": "a preview computed from request parameters, not stored objects",
    "/v1/invoices/upcoming/lines": "a preview computed from request parameters, not stored objects",
    "/v1/apps/secrets": "Stripe Apps' secret store, listed per app scope; its payloads are secrets",
    "/v1/accounts/{account}/persons": "a connected account's, made with the account (world.rs, `connect`)",
    "/v1/accounts/{account}/capabilities": "a connected account's, made with the account (world.rs, `connect`)",
}

# Required list parameters name the parent object whose children the list returns.
REQUIRED_PARENTS = {
    "financial_account": "treasury.financial_account",
    "value_list": "radar.value_list",
    "setup_intent": "setup_intent",
    "subscription": "subscription",
}

# A parent field naming the newest item of a list that needs the parent's id: the simulator sets it when
# an item is added (a setup intent's `latest_attempt`).
LATEST_ON_PARENT = {"/v1/setup_attempts": "latest_attempt"}

LIST_CONTROL_PARAMS = {"expand", "limit", "starting_after", "ending_before", "created"}


def fixture_id_prefix(fixture_id):
    """`cs_test_a1GY…` → `cs_test`, `sub_sched_1Nn…` → `sub_sched`; ids without `_` have no prefix."""
    return fixture_id.rsplit("_", 1)[0] if "_" in fixture_id else ""


def event_prefix(obj, all_events):
    """The prefix of an object's event types: `issuing.card` → `issuing_card` (`issuing_card.created`),
    `scheduled_query_run` → `sigma.scheduled_query_run`; otherwise the object type itself."""
    for prefix in (obj, obj.replace(".", "_"), f"sigma.{obj}"):
        if any(e.startswith(prefix + ".") and "." not in e[len(prefix) + 1:] for e in all_events):
            return prefix
    return obj


def top_level_lists(spec):
    """Every top-level list endpoint (`GET /v1/...` without a path parameter, answering a list object of
    one object type), in path order: (path, operation, item schema, object type)."""
    for path in sorted(spec.paths):
        if "{" in path or "get" not in spec.paths[path]:
            continue
        op = spec.paths[path]["get"]
        try:
            schema = op["responses"]["200"]["content"]["application/json"]["schema"]
            items = spec.deref(schema)["properties"]["data"]["items"]
        except (KeyError, TypeError):
            continue
        if not is_list_object(spec.deref(schema)) or "$ref" not in items:
            continue
        item = spec.deref(items)
        obj = object_name(spec, item)
        if obj is not None:
            yield path, op, item, obj


def nested_lists(spec):
    """The lists of `NESTED_LISTS`, as `top_level_lists` yields them."""
    for path in sorted(NESTED_LISTS):
        op = list_operation(spec, path)
        item = spec.schemas[list_item_schema(spec, op, path)]
        yield path, op, item, object_name(spec, item)


def sim_resources(spec, fixtures, all_events):
    top = []
    for path, op, item, obj in itertools.chain(top_level_lists(spec), nested_lists(spec)):
        if path in SIM_SKIPPED:
            continue
        nested = NESTED_LISTS.get(path)
        props = item.get("properties") or {}
        params = query_params(op)
        names = [p["name"] for p in params]
        filters = []
        for name in names:
            if name in LIST_CONTROL_PARAMS or name not in props:
                continue
            kind = expansion_of(spec, props[name])
            scalar = scalar_type(spec.deref(props[name])) if "anyOf" not in props[name] else None
            if kind.get("ref") or scalar:
                filters.append(name)
        required = [p["name"] for p in params if p.get("required")]
        refs = []
        for field in item.get("x-expandableFields") or []:
            target = expansion_of(spec, props.get(field, {})).get("ref")
            if target and len(target) == 1:
                refs.append([field, target[0]])
        parents = []
        for name in required:
            if name not in REQUIRED_PARENTS:
                raise GenerateError(f"{path}: required parameter {name!r} has no parent in REQUIRED_PARENTS")
            parents.append([name, REQUIRED_PARENTS[name]])
        if nested:
            # The parent's id comes from the path; the simulator lists the items whose field holds it.
            parent_path = path[len("/v1/"):].rsplit("/", 2)[0]
            parent_obj = next(o for p, _, _, o in top_level_lists(spec) if p == f"/v1/{parent_path}")
            filters.append(nested["field"])
            parents.append([nested["field"], parent_obj])
            nested = {
                "parent": parent_path,
                "segment": path.rsplit("/", 1)[1],
                "field": nested["field"],
                "embedded": nested.get("embedded", False),
                "touch": nested.get("touch"),
            }

        prefix = (NESTED_LISTS.get(path) or {}).get("event_prefix") or event_prefix(obj, all_events)

        def event(action):
            name = f"{prefix}.{action}"
            return name if name in all_events else None

        fixture = fixtures.get(obj) or {}
        top.append({
            "path": path[len("/v1/"):],
            "object": obj,
            "id_prefix": fixture_id_prefix(str(fixture.get("id") or "")),
            "created_filter": "created" in names,
            "filters": filters,
            "required": required,
            "parents": parents,
            "refs": refs,
            "created_event": event("created") or next(iter(creation_events(obj, all_events)), None),
            "updated_event": event("updated"),
            "deleted_event": event("deleted") if f"deleted_{obj}" in spec.schemas else None,
            # A list under its parent's path needs the parent's permission, as Stripe's do.
            "permission": f"rak_{(parents[-1][1] if nested else obj).replace('.', '_')}_read",
            "nested": nested,
            "latest_on_parent": LATEST_ON_PARENT.get(path),
            # The list under its path whose items it owns (`line_items`), if any.
            "owned": OWNED_LISTS[path]["list"].rsplit("/", 1)[1] if path in OWNED_LISTS else None,
        })
    # Parents before the lists that need them, so generation can pick them.
    order = {r["object"]: i for i, r in enumerate(top)}
    top.sort(key=lambda r: (len(r["parents"]) > 0, order[r["object"]]))
    return top


def write_json(path, value, indent):
    text = json.dumps(value, indent=indent, ensure_ascii=False, separators=(",", ":") if indent is None else None)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


SIGMA_REPORT_OUT = os.path.join(HERE, "SIGMA.md")


def write_sigma_report(catalog, sigma, missing):
    """`SIGMA.md`: where the catalog's tables differ from Stripe Sigma's, table by table."""
    tables = [t for d in catalog["datasets"] for t in d["tables"]]
    lines = [
        "# Where the tables differ from Stripe Sigma's",
        "",
        "Generated by `generate.py` from `sigma-schema.json`; do not edit. The README's \"Stripe Sigma's names\"",
        "says how Sigma's names are found. Every column Sigma has for a table is in the catalog, except these.",
        "",
        "## Sigma columns not in the catalog",
        "",
        "| table | column | why |",
        "|---|---|---|",
    ]
    for t in tables:
        for name, why in missing.get(t["name"], []):
            lines.append(f"| `{t['name']}` | `{name}` | {why} |")
    lines += [
        "",
        "## Tables Sigma does not have",
        "",
        "Named after the API path (the README's rules); the `connected_account_*` tables of a platform follow their base table.",
        "",
    ]
    lines += [f"- `{t['name']}`" for t in tables if t["name"] not in sigma and t["kind"] != "metadata"]
    with open(SIGMA_REPORT_OUT, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def sanity_check(catalog):
    tables = {t["name"]: t for d in catalog["datasets"] for t in d["tables"]}
    problems = []
    for tname, cols in EXPECT.items():
        have = {c["name"]: c for c in tables.get(tname, {}).get("columns", [])}
        if tname not in tables:
            problems.append(f"table {tname} missing")
            continue
        for cname, (typ, ref) in cols.items():
            c = have.get(cname)
            if c is None:
                problems.append(f"{tname}.{cname} missing")
            elif c["type"] != typ or c.get("reference", False) != ref:
                problems.append(f"{tname}.{cname} is {c}, expected type {typ}, reference {ref}")
    for tname, cols in EXPECT_ABSENT.items():
        have = {c["name"] for c in tables.get(tname, {}).get("columns", [])}
        for cname in cols:
            if cname in have:
                problems.append(f"{tname}.{cname} must not be a column")
    for t in tables.values():
        if t["kind"] == "main" and (not t["columns"] or t["columns"][0]["name"] != "id"):
            problems.append(f"{t['name']}: first column is not id")
    if len(tables) != sum(len(d["tables"]) for d in catalog["datasets"]):
        problems.append("duplicate table names")
    return problems


def main(argv):
    if len(argv) > 3 or any(a in ("-h", "--help") for a in argv[1:]):
        print(__doc__.strip())
        return 0 if len(argv) <= 3 else 2
    spec_path = os.path.abspath(argv[1]) if len(argv) > 1 else DEFAULT_SPEC
    out_path = os.path.abspath(argv[2]) if len(argv) > 2 else DEFAULT_OUT
    with open(spec_path, encoding="utf-8") as f:
        spec = Spec(yaml.load(f, Loader=yaml.CSafeLoader))
    all_events = event_types(spec)
    with open(SIGMA_SCHEMA, encoding="utf-8") as f:
        sigma = json.load(f)
    catalog = {
        "api_version": str(spec.doc["info"]["version"]),
        "generated_from": os.path.basename(spec_path),
        "datasets": [],
    }
    sigma_missing = {}
    for ds in all_datasets(spec, sigma):
        dataset, missing = build_dataset(spec, ds, all_events, sigma)
        catalog["datasets"].append(dataset)
        sigma_missing.update(missing)
    problems = sanity_check(catalog)
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 1
    write_json(out_path, catalog, 1)
    write_sigma_report(catalog, sigma, sigma_missing)
    expansions = sim_expansions(spec)
    write_json(SIM_EXPANSIONS_OUT, expansions, None)
    with open(SIM_FIXTURES, encoding="utf-8") as f:
        fixtures = json.load(f)["resources"]
    resources = sim_resources(spec, fixtures, all_events)
    write_json(SIM_RESOURCES_OUT, resources, 1)
    for d in catalog["datasets"]:
        for t in d["tables"]:
            print(f"{t['name']:<36} {t['kind']:<9} {len(t['columns']):>4} columns")
    print(f"wrote {out_path} ({len(catalog['datasets'])} datasets) from {os.path.basename(spec_path)}")
    print(f"wrote {SIM_EXPANSIONS_OUT} ({len(expansions)} schemas with expandable fields)")
    print(f"wrote {SIM_RESOURCES_OUT} ({len(resources)} list endpoints)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (GenerateError, OSError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
