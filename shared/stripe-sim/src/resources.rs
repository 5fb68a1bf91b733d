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

use Filter::Field as F;
use Res::*;

impl Res {
    /// Every resource, in a fixed order (the order of tables in a scope).
    pub const ALL: [Res; 20] = [
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

    /// Position in [`Res::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Resource for a `/v1/<path>` segment.
    pub fn from_path(path: &str) -> Option<Res> {
        Res::ALL.into_iter().find(|r| r.def().path == path)
    }

    /// Resource whose objects have this `object` value (`charge`).
    pub fn from_object(object: &str) -> Option<Res> {
        Res::ALL.into_iter().find(|r| r.def().object == object)
    }

    /// Resource whose ids start with `prefix_` (used for polymorphic references).
    pub fn from_id(id: &str) -> Option<Res> {
        let prefix = id.split('_').next()?;
        Res::ALL
            .into_iter()
            .find(|r| r.def().id_prefix == prefix && *r != Coupon)
    }

    /// The static description.
    pub fn def(self) -> &'static ResourceDef {
        &DEFS[self.index()]
    }
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
    fn table_is_in_enum_order_and_paths_are_unique() {
        for (i, r) in Res::ALL.into_iter().enumerate() {
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
    }
}
