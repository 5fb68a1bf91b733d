//! The resources the simulator serves, as one static table.
//!
//! Everything that differs between Stripe's list endpoints (path, id prefix, which filters exist, whether
//! `created` is accepted, which events a change emits, its permission) lives here, so the list and event
//! code stays generic; which fields expand into what comes from the spec itself (`expand`). The facts come from Stripe's OpenAPI spec for API
//! 2023-08-16 and the list-endpoint table in `shared/stripe-openapi/`.

/// One simulated resource (one list endpoint under `/v1/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Res {
    BalanceTransaction,
    Charge,
    Customer,
    PaymentIntent,
    Refund,
    Dispute,
    Payout,
    Transfer,
    Invoice,
    InvoiceItem,
    Subscription,
    SubscriptionItem,
    Price,
    Product,
    Coupon,
    CreditNote,
    SetupIntent,
    ApplicationFee,
    Event,
    Account,
    /// A resource without a hand-written generator, served from the spec's table
    /// (`data/resources.json`): its position there, among the entries the simulator serves.
    Generic(u16),
}

/// How a list filter parameter is matched against an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `param=value` keeps objects whose top-level field of the same name equals `value` (an id for
    /// references, the string form for scalars).
    Field(&'static str),
}

/// The static description of one resource.
#[derive(Debug)]
pub struct ResourceDef {
    /// Path segment under `/v1/` and the dataset name (`charges`).
    pub path: &'static str,
    /// The `object` field of its objects (`charge`).
    pub object: &'static str,
    /// The id prefix (`ch`).
    pub id_prefix: &'static str,
    /// Whether the list endpoint accepts `created` (exact or `gt/gte/lt/lte`).
    pub created_filter: bool,
    /// Equality filters the list endpoint accepts, in the order of `Row::attrs`.
    pub filters: &'static [Filter],
    /// Parameters the list endpoint requires (`subscription` on `/v1/subscription_items`).
    pub required: &'static [&'static str],
    /// Event emitted when an object is created (`None`: Stripe has no such event).
    pub created_event: Option<&'static str>,
    /// Event emitted when an object is updated (`None`: updates are silent, as for balance transactions).
    pub updated_event: Option<&'static str>,
    /// Event emitted when an object is deleted (`None`: the resource cannot be deleted).
    pub deleted_event: Option<&'static str>,
    /// The restricted-key permission that reads it (`rak_charge_read`).
    pub permission: &'static str,
}

use crate::error::ApiError;
use std::sync::OnceLock;
use Filter::Field as F;
use Res::*;

impl Res {
    /// The resources with hand-written generators, in a fixed order (the first tables of a scope).
    pub const HAND_WRITTEN: [Res; 20] = [
        BalanceTransaction,
        Charge,
        Customer,
        PaymentIntent,
        Refund,
        Dispute,
        Payout,
        Transfer,
        Invoice,
        InvoiceItem,
        Subscription,
        SubscriptionItem,
        Price,
        Product,
        Coupon,
        CreditNote,
        SetupIntent,
        ApplicationFee,
        Event,
        Account,
    ];

    /// Every resource: the hand-written ones, then the generic ones (the order of tables in a scope).
    pub fn all() -> impl Iterator<Item = Res> {
        Res::HAND_WRITTEN
            .into_iter()
            .chain((0..generics().len()).map(|i| Res::Generic(i as u16)))
    }

    /// Position in [`Res::all`].
    pub fn index(self) -> usize {
        match self {
            Res::Generic(i) => Res::HAND_WRITTEN.len() + i as usize,
            _ => Res::HAND_WRITTEN
                .iter()
                .position(|r| *r == self)
                .unwrap_or_default(),
        }
    }

    /// Resource for the path under `/v1/` of its list (`charges`, `checkout/sessions`).
    pub fn from_path(path: &str) -> Option<Res> {
        Res::all().find(|r| r.def().path == path)
    }

    /// The list under `parent`'s path named `segment` (`tax_ids` of customers).
    pub fn nested(parent: Res, segment: &str) -> Option<Res> {
        Res::all().find(|r| {
            r.generic()
                .and_then(|g| g.nested.as_ref())
                .is_some_and(|n| n.parent == parent.def().path && n.segment == segment)
        })
    }

    /// The list under this resource's path whose items it owns, if any: an invoice's `lines`, a
    /// Checkout session's `line_items` (see `Scope::lines`).
    pub fn owned(self) -> Option<&'static str> {
        match self {
            Res::Invoice => Some("lines"),
            _ => self.generic().and_then(|g| g.owned),
        }
    }

    /// Resource whose objects have this `object` value (`charge`).
    pub fn from_object(object: &str) -> Option<Res> {
        Res::all().find(|r| r.def().object == object)
    }

    /// The product an account must use for this resource's list to answer (`issuing/cards`: Issuing).
    pub fn product(self) -> Option<Product> {
        match self.def().path.split_once('/')?.0 {
            "issuing" => Some(Product::Issuing),
            "treasury" => Some(Product::Treasury),
            "identity" => Some(Product::Identity),
            _ => None,
        }
    }

    /// The generation facts of a generic resource (`None` for a hand-written one).
    pub fn generic(self) -> Option<&'static Generic> {
        match self {
            Res::Generic(i) => generics().get(i as usize),
            _ => None,
        }
    }

    /// Resource whose ids start with `prefix_` (used for polymorphic references).
    pub fn from_id(id: &str) -> Option<Res> {
        // The longest prefix wins: `sub_sched_…` is a subscription schedule, not a subscription.
        Res::all()
            .filter(|r| {
                let p = r.def().id_prefix;
                !p.is_empty()
                    && *r != Coupon
                    && id.len() > p.len()
                    && id.starts_with(p)
                    && id.as_bytes()[p.len()] == b'_'
            })
            .max_by_key(|r| r.def().id_prefix.len())
    }

    /// The static description.
    pub fn def(self) -> &'static ResourceDef {
        match self {
            Res::Generic(i) => &generics()[i as usize].def,
            _ => &DEFS[self.index()],
        }
    }
}

/// A Stripe product an account must be onboarded to before its lists answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Issuing,
    Treasury,
    Identity,
}

impl Product {
    /// What Stripe answers (HTTP 400, `invalid_request_error`, no code) when an account that does not use
    /// the product lists its objects: the wording Stripe's own sync engine and other extractors match.
    pub fn not_enabled(self, path: &str) -> ApiError {
        let message = match self {
            Product::Issuing => "Your account is not set up to use Issuing. Please visit https://dashboard.stripe.com/issuing/overview to get started.".to_string(),
            Product::Identity => "Your account is not set up to use Identity. Please have an account admin visit https://dashboard.stripe.com/identity to get started.".to_string(),
            Product::Treasury => format!("Unrecognized request URL (GET: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/. (Hint: Have you onboarded to Treasury? You can learn more about the steps needed at https://stripe.com/docs/treasury/access)"),
        };
        ApiError::invalid(None, message)
    }
}

/// A resource served from the spec's table, with what generating its objects needs.
#[derive(Debug)]
pub struct Generic {
    pub def: ResourceDef,
    /// Required list parameters and the object type each names (`financial_account` →
    /// `treasury.financial_account`): every object belongs to an existing parent.
    pub parents: Vec<(&'static str, &'static str)>,
    /// Expandable references to a single object type (`customer` → `customer`): generated objects
    /// point at existing objects.
    pub refs: Vec<(&'static str, &'static str)>,
    /// Set for a list under its parent's path (`/v1/customers/{customer}/tax_ids`).
    pub nested: Option<Nested>,
    /// The parent's field naming its newest item (a setup intent's `latest_attempt`).
    pub latest_on_parent: Option<&'static str>,
    /// The list under its path of items it owns, which name no parent (a Checkout session's
    /// `line_items`): kept with it, as an invoice's lines are (`Scope::lines`).
    pub owned: Option<&'static str>,
}

/// A list under its parent's path: `/v1/{parent}/{id}/{segment}` lists the items whose `field` holds
/// the parent's id.
#[derive(Debug)]
pub struct Nested {
    /// The parent's list path (`customers`).
    pub parent: &'static str,
    pub segment: &'static str,
    pub field: &'static str,
    /// The parent embeds the list's first page by default (a transfer's `reversals`).
    pub embedded: bool,
    /// The event Stripe emits on the parent when an item without a creation event of its own is added
    /// (`transfer.updated`, `application_fee.refunded`).
    pub touch: Option<&'static str>,
}

static RESOURCES: &str = include_str!("../data/resources.json");

/// One entry of `data/resources.json`, written by the catalog generator from the spec.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    path: String,
    object: String,
    id_prefix: String,
    created_filter: bool,
    filters: Vec<String>,
    required: Vec<String>,
    parents: Vec<(String, String)>,
    refs: Vec<(String, String)>,
    created_event: Option<String>,
    updated_event: Option<String>,
    deleted_event: Option<String>,
    permission: String,
    nested: Option<NestedEntry>,
    latest_on_parent: Option<String>,
    owned: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NestedEntry {
    parent: String,
    segment: String,
    field: String,
    embedded: bool,
    touch: Option<String>,
}

/// The table's resources that no hand-written definition serves, in the table's order (parents first).
/// Their strings live for the whole process, as the hand-written definitions' do.
fn generics() -> &'static [Generic] {
    static PARSED: OnceLock<Vec<Generic>> = OnceLock::new();
    PARSED.get_or_init(|| {
        fn leak(s: String) -> &'static str {
            Box::leak(s.into_boxed_str())
        }
        // Embedded at build time; `resource_table_parses` keeps it valid.
        let entries: Vec<Entry> = serde_json::from_str(RESOURCES).unwrap_or_default();
        entries
            .into_iter()
            .filter(|e| !DEFS.iter().any(|d| d.path == e.path))
            .map(|e| Generic {
                def: ResourceDef {
                    path: leak(e.path),
                    object: leak(e.object),
                    id_prefix: leak(e.id_prefix),
                    created_filter: e.created_filter,
                    filters: Box::leak(
                        e.filters
                            .into_iter()
                            .map(|f| Filter::Field(leak(f)))
                            .collect(),
                    ),
                    required: Box::leak(e.required.into_iter().map(leak).collect()),
                    created_event: e.created_event.map(leak),
                    updated_event: e.updated_event.map(leak),
                    deleted_event: e.deleted_event.map(leak),
                    permission: leak(e.permission),
                },
                parents: e
                    .parents
                    .into_iter()
                    .map(|(a, b)| (leak(a), leak(b)))
                    .collect(),
                refs: e
                    .refs
                    .into_iter()
                    .map(|(a, b)| (leak(a), leak(b)))
                    .collect(),
                nested: e.nested.map(|n| Nested {
                    parent: leak(n.parent),
                    segment: leak(n.segment),
                    field: leak(n.field),
                    embedded: n.embedded,
                    touch: n.touch.map(leak),
                }),
                latest_on_parent: e.latest_on_parent.map(leak),
                owned: e.owned.map(leak),
            })
            .collect()
    })
}

static DEFS: [ResourceDef; 20] = [
    ResourceDef {
        path: "balance_transactions",
        object: "balance_transaction",
        id_prefix: "txn",
        created_filter: true,
        filters: &[F("currency"), F("payout"), F("source"), F("type")],
        required: &[],
        created_event: None,
        updated_event: None,
        deleted_event: None,
        permission: "rak_balance_transaction_source_read",
    },
    ResourceDef {
        path: "charges",
        object: "charge",
        id_prefix: "ch",
        created_filter: true,
        filters: &[F("customer"), F("payment_intent"), F("transfer_group")],
        required: &[],
        created_event: Some("charge.succeeded"),
        updated_event: Some("charge.updated"),
        deleted_event: None,
        permission: "rak_charge_read",
    },
    ResourceDef {
        path: "customers",
        object: "customer",
        id_prefix: "cus",
        created_filter: true,
        filters: &[F("email")],
        required: &[],
        created_event: Some("customer.created"),
        updated_event: Some("customer.updated"),
        deleted_event: Some("customer.deleted"),
        permission: "rak_customer_read",
    },
    ResourceDef {
        path: "payment_intents",
        object: "payment_intent",
        id_prefix: "pi",
        created_filter: true,
        filters: &[F("customer")],
        required: &[],
        created_event: Some("payment_intent.created"),
        updated_event: Some("payment_intent.succeeded"),
        deleted_event: None,
        permission: "rak_payment_intent_read",
    },
    ResourceDef {
        path: "refunds",
        object: "refund",
        id_prefix: "re",
        created_filter: true,
        filters: &[F("charge"), F("payment_intent")],
        required: &[],
        created_event: Some("refund.created"),
        updated_event: Some("refund.updated"),
        deleted_event: None,
        permission: "rak_refund_read",
    },
    ResourceDef {
        path: "disputes",
        object: "dispute",
        id_prefix: "dp",
        created_filter: true,
        filters: &[F("charge"), F("payment_intent")],
        required: &[],
        created_event: Some("charge.dispute.created"),
        updated_event: Some("charge.dispute.updated"),
        deleted_event: None,
        permission: "rak_dispute_read",
    },
    ResourceDef {
        path: "payouts",
        object: "payout",
        id_prefix: "po",
        created_filter: true,
        filters: &[F("status"), F("destination")],
        required: &[],
        created_event: Some("payout.created"),
        updated_event: Some("payout.updated"),
        deleted_event: None,
        permission: "rak_payout_read",
    },
    ResourceDef {
        path: "transfers",
        object: "transfer",
        id_prefix: "tr",
        created_filter: true,
        filters: &[F("destination"), F("transfer_group")],
        required: &[],
        created_event: Some("transfer.created"),
        updated_event: Some("transfer.updated"),
        deleted_event: None,
        permission: "rak_transfer_read",
    },
    ResourceDef {
        path: "invoices",
        object: "invoice",
        id_prefix: "in",
        created_filter: true,
        filters: &[
            F("customer"),
            F("subscription"),
            F("status"),
            F("collection_method"),
        ],
        required: &[],
        created_event: Some("invoice.created"),
        updated_event: Some("invoice.updated"),
        deleted_event: Some("invoice.deleted"),
        permission: "rak_invoice_read",
    },
    ResourceDef {
        path: "invoiceitems",
        object: "invoiceitem",
        id_prefix: "ii",
        created_filter: true,
        filters: &[F("customer"), F("invoice")],
        required: &[],
        created_event: Some("invoiceitem.created"),
        updated_event: None,
        deleted_event: Some("invoiceitem.deleted"),
        permission: "rak_invoice_read",
    },
    ResourceDef {
        path: "subscriptions",
        object: "subscription",
        id_prefix: "sub",
        created_filter: true,
        filters: &[F("customer"), F("status"), F("collection_method")],
        required: &[],
        created_event: Some("customer.subscription.created"),
        updated_event: Some("customer.subscription.updated"),
        deleted_event: None,
        permission: "rak_subscription_read",
    },
    ResourceDef {
        path: "subscription_items",
        object: "subscription_item",
        id_prefix: "si",
        created_filter: false,
        filters: &[F("subscription")],
        required: &["subscription"],
        created_event: None,
        updated_event: None,
        deleted_event: None,
        permission: "rak_subscription_read",
    },
    ResourceDef {
        path: "prices",
        object: "price",
        id_prefix: "price",
        created_filter: true,
        filters: &[F("product"), F("currency"), F("type"), F("active")],
        required: &[],
        created_event: Some("price.created"),
        updated_event: Some("price.updated"),
        deleted_event: Some("price.deleted"),
        permission: "rak_product_read",
    },
    ResourceDef {
        path: "products",
        object: "product",
        id_prefix: "prod",
        created_filter: true,
        filters: &[F("active"), F("type"), F("shippable")],
        required: &[],
        created_event: Some("product.created"),
        updated_event: Some("product.updated"),
        deleted_event: Some("product.deleted"),
        permission: "rak_product_read",
    },
    ResourceDef {
        path: "coupons",
        object: "coupon",
        id_prefix: "co",
        created_filter: true,
        filters: &[],
        required: &[],
        created_event: Some("coupon.created"),
        updated_event: Some("coupon.updated"),
        deleted_event: Some("coupon.deleted"),
        permission: "rak_coupon_read",
    },
    ResourceDef {
        path: "credit_notes",
        object: "credit_note",
        id_prefix: "cn",
        created_filter: true,
        filters: &[F("customer"), F("invoice")],
        required: &[],
        created_event: Some("credit_note.created"),
        updated_event: Some("credit_note.updated"),
        deleted_event: None,
        permission: "rak_credit_note_read",
    },
    ResourceDef {
        path: "setup_intents",
        object: "setup_intent",
        id_prefix: "seti",
        created_filter: true,
        filters: &[F("customer"), F("payment_method")],
        required: &[],
        created_event: Some("setup_intent.created"),
        updated_event: Some("setup_intent.succeeded"),
        deleted_event: None,
        permission: "rak_setup_intent_read",
    },
    ResourceDef {
        path: "application_fees",
        object: "application_fee",
        id_prefix: "fee",
        created_filter: true,
        filters: &[F("charge")],
        required: &[],
        created_event: Some("application_fee.created"),
        updated_event: None,
        deleted_event: None,
        permission: "rak_application_fee_read",
    },
    ResourceDef {
        path: "events",
        object: "event",
        id_prefix: "evt",
        created_filter: true,
        filters: &[F("type")],
        required: &[],
        created_event: None,
        updated_event: None,
        deleted_event: None,
        permission: "rak_event_read",
    },
    ResourceDef {
        path: "accounts",
        object: "account",
        id_prefix: "acct",
        created_filter: true,
        filters: &[],
        required: &[],
        created_event: None,
        updated_event: None,
        deleted_event: None,
        permission: "rak_connected_account_read",
    },
];

impl Filter {
    /// The query parameter (and object field) name.
    pub fn name(self) -> &'static str {
        match self {
            Filter::Field(name) => name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_table_parses() {
        let entries: Vec<Entry> = serde_json::from_str(RESOURCES).expect("data/resources.json");
        assert!(entries.len() > 60);
        assert!(Res::from_path("checkout/sessions").is_some());
        assert!(Res::from_path("treasury/transactions").is_some());
    }

    #[test]
    fn table_is_in_enum_order_and_paths_are_unique() {
        for (i, r) in Res::all().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(Res::from_path(r.def().path), Some(r));
        }
    }

    #[test]
    fn polymorphic_ids_resolve_by_prefix() {
        assert_eq!(Res::from_id("ch_123"), Some(Res::Charge));
        assert_eq!(Res::from_id("txn_1"), Some(Res::BalanceTransaction));
        assert_eq!(Res::from_id("po_1"), Some(Res::Payout));
        assert_eq!(Res::from_id("zz_1"), None);
        assert_eq!(Res::from_id("sub_1"), Some(Res::Subscription));
        assert_eq!(
            Res::from_id("sub_sched_1").map(|r| r.def().object),
            Some("subscription_schedule")
        );
    }
}
