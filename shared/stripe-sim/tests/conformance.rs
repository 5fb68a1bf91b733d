//! Conformance of the simulator with Stripe's API, over HTTP: each test pins one behaviour that an
//! extractor depends on.

mod common;

use common::Harness;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use stripe_sim::{AccountKind, FaultKind, FaultRule, RateLimits, SimConfig};

#[tokio::test]
async fn start_info_lists_accounts_and_keys_and_same_seed_gives_same_data() {
    let a = Harness::tiny().await;
    let b = Harness::tiny().await;
    let info = a.sim.info();
    assert!(info
        .accounts
        .iter()
        .any(|a| a.kind == AccountKind::Platform));
    assert_eq!(
        info.accounts
            .iter()
            .filter(|a| a.kind == AccountKind::Connected)
            .count(),
        2
    );
    for kind in ["secret", "restricted"] {
        for mode in ["test", "live"] {
            let key = info.key(kind, mode, 0).unwrap();
            let prefix = format!("{}_{mode}_", if kind == "secret" { "sk" } else { "rk" });
            assert!(key.starts_with(&prefix), "{key}");
        }
    }
    let key = a.key("test", 0);
    assert_eq!(key, b.key("test", 0));
    let pa = a.get("/v1/charges?limit=100", &key).await;
    let pb = b.get("/v1/charges?limit=100", &key).await;
    assert_eq!(pa.json, pb.json);
    let other = Harness::start(SimConfig {
        seed: 7,
        ..SimConfig::tiny()
    })
    .await;
    assert_ne!(other.key("test", 0), key);
}

#[tokio::test]
async fn missing_or_bad_key_is_401_with_stripe_error_body() {
    let h = Harness::tiny().await;
    let r = h
        .try_send("GET", "/v1/charges", None, &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json["error"]["type"], "invalid_request_error");
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did not provide an API key"));
    let r = h
        .get("/v1/charges", "sk_test_definitelynotarealkey1234")
        .await;
    assert_eq!(r.status, 401);
    let msg = r.json["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Invalid API Key provided") && msg.contains("1234"),
        "{msg}"
    );
    assert!(
        !msg.contains("definitelynotarealkey"),
        "the key is masked: {msg}"
    );
}

#[tokio::test]
async fn live_keys_see_live_objects_and_test_keys_test_objects() {
    let h = Harness::tiny().await;
    let live = h.get("/v1/customers?limit=100", &h.key("live", 0)).await;
    let test = h.get("/v1/customers?limit=100", &h.key("test", 0)).await;
    assert!(live.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["livemode"] == true));
    assert!(test.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["livemode"] == false));
    let test_id = &test.ids()[0];
    let r = h
        .get(&format!("/v1/customers/{test_id}"), &h.key("live", 0))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json["error"]["code"], "resource_missing");
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exists in test mode"));
    let r = h
        .get(&format!("/v1/customers/{test_id}"), &h.key("test", 0))
        .await;
    assert_eq!(
        (r.status, r.json["id"].as_str()),
        (200, Some(test_id.as_str()))
    );
    let acct = h.get("/v1/account", &h.key("test", 0)).await;
    assert_eq!(acct.json["id"], h.account(0));
    assert_eq!(acct.json["object"], "account");
}

#[tokio::test]
async fn restricted_key_without_a_permission_gets_403_naming_it() {
    let h = Harness::tiny().await;
    let account = h.account(0);
    let minted = h
        .control(
            "POST",
            "keys",
            json!({"account": account, "mode": "test", "allow": ["customers", "invoices"]}),
        )
        .await;
    let key = minted["key"].as_str().unwrap();
    assert!(key.starts_with("rk_test_"));
    assert_eq!(h.get("/v1/customers", key).await.status, 200);
    let r = h.get("/v1/charges", key).await;
    assert_eq!(r.status, 403);
    let msg = r.json["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("rak_charge_read") && msg.contains(&account),
        "{msg}"
    );
    assert!(!msg.contains(key), "the key is masked");
    // The printed restricted keys read everything.
    assert_eq!(
        h.get(
            "/v1/charges",
            &h.sim.info().key("restricted", "test", 0).unwrap()
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn pagination_walks_every_object_once_newest_first() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let account = h.account(0);
    for resource in [
        "charges",
        "customers",
        "balance_transactions",
        "invoices",
        "payment_intents",
    ] {
        let truth = h.truth_ids_newest_first(&account, "test", resource).await;
        assert!(truth.len() > 10, "{resource} has data");
        let walked = h.walk(&format!("/v1/{resource}"), &key, 7).await;
        assert_eq!(walked, truth, "{resource}");
    }
    // Default page size is 10, and created is non-increasing.
    let page = h.get("/v1/charges", &key).await;
    assert_eq!(page.ids().len(), 10);
    let created: Vec<i64> = page.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["created"].as_i64().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(page.json["url"], "/v1/charges");
    assert_eq!(page.json["object"], "list");
    // ending_before pages towards newer objects and returns them newest first.
    let all = h.walk("/v1/charges", &key, 100).await;
    let r = h
        .get(
            &format!("/v1/charges?limit=3&ending_before={}", all[5]),
            &key,
        )
        .await;
    assert_eq!(r.ids(), all[2..5].to_vec());
    assert_eq!(r.json["has_more"], true);
    let r = h
        .get(
            &format!("/v1/charges?limit=3&ending_before={}", all[2]),
            &key,
        )
        .await;
    assert_eq!(r.ids(), all[0..2].to_vec());
    assert_eq!(r.json["has_more"], false);
}

#[tokio::test]
async fn list_parameters_are_validated_like_stripe() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    for bad in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "starting_after=a&ending_before=b",
        "bogus=1",
        "created[between]=3",
    ] {
        let r = h.get(&format!("/v1/charges?{bad}"), &key).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json["error"]["type"], "invalid_request_error");
    }
    assert_eq!(h.get("/v1/charges?limit=100", &key).await.status, 200);
    let r = h.get("/v1/subscription_items", &key).await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("parameter_missing"))
    );
    let sub = h.get("/v1/subscriptions?limit=1", &key).await.ids()[0].clone();
    let r = h
        .get(
            &format!("/v1/subscription_items?subscription={sub}&created[gte]=1"),
            &key,
        )
        .await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("parameter_unknown"))
    );
}

#[tokio::test]
async fn created_filters_select_exact_ranges() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let truth = h.truth(&h.account(0), "test", "charges").await;
    let mut times: Vec<i64> = truth
        .iter()
        .map(|(_, _, o)| o["created"].as_i64().unwrap())
        .collect();
    times.sort();
    let (lo, hi) = (times[times.len() / 4], times[times.len() * 3 / 4]);
    let expect = |f: &dyn Fn(i64) -> bool| -> HashSet<String> {
        truth
            .iter()
            .filter(|(_, _, o)| f(o["created"].as_i64().unwrap()))
            .map(|(id, _, _)| id.clone())
            .collect()
    };
    let got: HashSet<String> = h
        .walk(
            &format!("/v1/charges?created[gte]={lo}&created[lt]={hi}"),
            &key,
            100,
        )
        .await
        .into_iter()
        .collect();
    assert_eq!(got, expect(&|t| t >= lo && t < hi));
    let got: HashSet<String> = h
        .walk(
            &format!("/v1/charges?created[gt]={lo}&created[lte]={hi}"),
            &key,
            100,
        )
        .await
        .into_iter()
        .collect();
    assert_eq!(got, expect(&|t| t > lo && t <= hi));
    let got: HashSet<String> = h
        .walk(&format!("/v1/charges?created={lo}"), &key, 100)
        .await
        .into_iter()
        .collect();
    assert_eq!(got, expect(&|t| t == lo));
}

#[tokio::test]
async fn a_deleted_cursor_object_is_resource_missing() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let account = h.account(0);
    let page = h.get("/v1/customers?limit=3", &key).await;
    let cursor = page.ids()[1].clone();
    h.control(
        "POST",
        "delete",
        json!({"account": account, "mode": "test", "resource": "customers", "ids": [cursor]}),
    )
    .await;
    let r = h
        .get(&format!("/v1/customers?starting_after={cursor}"), &key)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"]["code"], "resource_missing");
    assert_eq!(r.json["error"]["param"], "starting_after");
    // Deleted objects vanish from lists, retrieve returns the deleted stub, ground truth flags them.
    assert!(!h.walk("/v1/customers", &key, 100).await.contains(&cursor));
    let r = h.get(&format!("/v1/customers/{cursor}"), &key).await;
    assert_eq!(
        r.json,
        json!({"id": cursor, "object": "customer", "deleted": true})
    );
    let truth = h.truth(&account, "test", "customers").await;
    assert!(truth
        .iter()
        .any(|(id, deleted, _)| *id == cursor && *deleted));
    // A cursor that no longer matches the filter is missing too.
    let sub = h.get("/v1/subscriptions?limit=1", &key).await.ids()[0].clone();
    h.control(
        "POST",
        "cancel_subscriptions",
        json!({"account": account, "mode": "test", "ids": [sub]}),
    )
    .await;
    let r = h
        .get(&format!("/v1/subscriptions?starting_after={sub}"), &key)
        .await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("resource_missing"))
    );
}

#[tokio::test]
async fn subscriptions_hide_canceled_unless_asked() {
    let h = Harness::start(SimConfig {
        objects: 400,
        ..SimConfig::tiny()
    })
    .await;
    let key = h.key("test", 0);
    let status_of = |ids: &[String], truth: &[(String, bool, Value)]| -> HashSet<String> {
        ids.iter()
            .map(|id| {
                truth.iter().find(|(t, _, _)| t == id).unwrap().2["status"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let truth = h.truth(&h.account(0), "test", "subscriptions").await;
    let default = h.walk("/v1/subscriptions", &key, 100).await;
    let all = h.walk("/v1/subscriptions?status=all", &key, 100).await;
    let canceled = h.walk("/v1/subscriptions?status=canceled", &key, 100).await;
    assert_eq!(all.len(), truth.len());
    assert!(!status_of(&default, &truth).contains("canceled"));
    assert_eq!(
        status_of(&canceled, &truth),
        HashSet::from(["canceled".to_string()])
    );
    assert_eq!(default.len() + canceled.len(), all.len());
}

#[tokio::test]
async fn invoices_embed_ten_lines_and_page_the_rest() {
    let h = Harness::start(SimConfig {
        objects: 400,
        ..SimConfig::tiny()
    })
    .await;
    let key = h.key("test", 0);
    let truth = h.truth(&h.account(0), "test", "invoices").await;
    let (id, _, full) = truth
        .iter()
        .find(|(_, _, o)| o["lines"]["data"].as_array().unwrap().len() > 10)
        .expect("an invoice with more than 10 lines");
    let inv = h.get(&format!("/v1/invoices/{id}"), &key).await;
    assert_eq!(inv.json["lines"]["data"].as_array().unwrap().len(), 10);
    assert_eq!(inv.json["lines"]["has_more"], true);
    let lines = h.walk(&format!("/v1/invoices/{id}/lines"), &key, 4).await;
    let expect: Vec<String> = full["lines"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines, expect);
    assert_eq!(inv.json["lines"]["url"], format!("/v1/invoices/{id}/lines"));
}

#[tokio::test]
async fn subscription_items_filter_by_subscription() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let subs = h.truth(&h.account(0), "test", "subscriptions").await;
    let (sub, _, obj) = &subs[0];
    let items = h
        .walk(
            &format!("/v1/subscription_items?subscription={sub}"),
            &key,
            2,
        )
        .await;
    let embedded: HashSet<String> = obj["items"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(items.into_iter().collect::<HashSet<_>>(), embedded);
}

#[tokio::test]
async fn expand_replaces_references_up_to_four_levels() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let r = h
        .get(
            "/v1/charges?limit=50&expand[]=data.customer&expand[]=data.balance_transaction",
            &key,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let data = r.json["data"].as_array().unwrap();
    assert!(data.iter().any(|c| c["customer"]["object"] == "customer"));
    assert!(data
        .iter()
        .any(|c| c["balance_transaction"]["object"] == "balance_transaction"));
    assert!(data
        .iter()
        .all(|c| !c["customer"].is_string() && !c["balance_transaction"].is_string()));
    // The Python library's array form.
    let r = h
        .get("/v1/charges?limit=5&expand[0]=data.payment_intent", &key)
        .await;
    assert!(r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["payment_intent"]["object"] == "payment_intent"));
    let r = h
        .get("/v1/refunds?limit=5&expand[]=data.charge.customer", &key)
        .await;
    assert_eq!(r.status, 200);
    for bad in [
        "expand[]=customer",
        "expand[]=data.amount",
        "expand[]=data.payment_intent.latest_charge.payment_intent.latest_charge.customer",
    ] {
        let r = h.get(&format!("/v1/charges?{bad}"), &key).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let id = &h.get("/v1/charges?limit=1", &key).await.ids()[0];
    let r = h
        .get(
            &format!("/v1/charges/{id}?expand[]=balance_transaction"),
            &key,
        )
        .await;
    assert_eq!(
        r.json["balance_transaction"]["object"],
        "balance_transaction"
    );
}

#[tokio::test]
async fn changes_emit_events_with_previous_attributes() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let account = h.account(0);
    let created = h
        .control(
            "POST",
            "create",
            json!({"account": account, "mode": "test", "resource": "customers", "count": 3}),
        )
        .await;
    let ids: Vec<String> = serde_json::from_value(created["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 3);
    let events = h
        .get("/v1/events?type=customer.created&limit=3", &key)
        .await;
    let objs: HashSet<String> = events.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["object"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(objs, ids.iter().cloned().collect());
    let e = &events.json["data"][0];
    assert_eq!(e["object"], "event");
    assert_eq!(e["api_version"], "2023-08-16");
    assert!(e["request"]["id"].as_str().unwrap().starts_with("req_"));
    let updated = h
        .control(
            "POST",
            "update",
            json!({"account": account, "mode": "test", "resource": "customers", "ids": [ids[0]]}),
        )
        .await;
    assert_eq!(updated["ids"][0], ids[0].as_str());
    let ev = h
        .get("/v1/events?type=customer.updated&limit=1", &key)
        .await;
    let ev = &ev.json["data"][0];
    assert_eq!(ev["data"]["object"]["id"], ids[0].as_str());
    let prev = &ev["data"]["previous_attributes"];
    assert!(
        prev.get("email").is_some() && prev.get("metadata").is_some(),
        "{prev}"
    );
    assert_ne!(prev["email"], ev["data"]["object"]["email"]);
    let now = h.get(&format!("/v1/customers/{}", ids[0]), &key).await;
    assert_eq!(now.json["email"], ev["data"]["object"]["email"]);
    h.control(
        "POST",
        "delete",
        json!({"account": account, "mode": "test", "resource": "customers", "ids": [ids[1]]}),
    )
    .await;
    let ev = h.get("/v1/events?type=customer.deleted", &key).await;
    assert_eq!(ev.json["data"][0]["data"]["object"]["id"], ids[1].as_str());
    // Resources without a deleted event cannot be deleted.
    let r = h
        .try_send(
            "POST",
            "/_sim/delete",
            None,
            &[],
            Some(json!({"account": account, "mode": "test", "resource": "charges", "count": 1})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    // Wildcards and type lists.
    let r = h.walk("/v1/events?type=customer.*", &key, 100).await;
    assert!(r.len() >= 5);
    let r = h
        .get(
            "/v1/events?types[]=customer.created&types[]=customer.deleted&limit=100",
            &key,
        )
        .await;
    let types: HashSet<String> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types,
        HashSet::from([
            "customer.created".to_string(),
            "customer.deleted".to_string()
        ])
    );
    assert_eq!(h.get("/v1/events?type=a&types[]=b", &key).await.status, 400);
}

#[tokio::test]
async fn nested_creations_and_cancellations_emit_events() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let account = h.account(0);
    let r = h
        .control(
            "POST",
            "create",
            json!({"account": account, "mode": "test", "resource": "subscriptions", "count": 1}),
        )
        .await;
    let sub = r["ids"][0].as_str().unwrap().to_string();
    let ev = h
        .get(
            "/v1/events?type=customer.subscription.created&limit=1",
            &key,
        )
        .await;
    assert_eq!(ev.json["data"][0]["data"]["object"]["id"], sub.as_str());
    h.control(
        "POST",
        "cancel_subscriptions",
        json!({"account": account, "mode": "test", "ids": [sub]}),
    )
    .await;
    let ev = h
        .get(
            "/v1/events?type=customer.subscription.deleted&limit=1",
            &key,
        )
        .await;
    assert_eq!(ev.json["data"][0]["data"]["object"]["status"], "canceled");
    let s = h.get(&format!("/v1/subscriptions/{sub}"), &key).await;
    assert_eq!(s.json["status"], "canceled");
    for resource in [
        "refunds",
        "disputes",
        "invoices",
        "credit_notes",
        "products",
        "coupons",
        "payouts",
        "setup_intents",
        "invoiceitems",
        "prices",
    ] {
        let r = h
            .control(
                "POST",
                "create",
                json!({"account": account, "mode": "test", "resource": resource, "count": 2}),
            )
            .await;
        let ids = r["ids"].as_array().unwrap();
        assert_eq!(ids.len(), 2, "{resource}");
        for id in ids {
            let got = h
                .get(&format!("/v1/{resource}/{}", id.as_str().unwrap()), &key)
                .await;
            assert_eq!(got.status, 200, "{resource} {id}");
        }
    }
}

#[tokio::test]
async fn events_expire_after_30_days() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let account = h.account(0);
    h.control(
        "POST",
        "create",
        json!({"account": account, "mode": "test", "resource": "customers", "count": 1}),
    )
    .await;
    let ev = h.get("/v1/events?limit=1", &key).await.ids()[0].clone();
    assert_eq!(h.get(&format!("/v1/events/{ev}"), &key).await.status, 200);
    h.control("POST", "clock/advance", json!({"seconds": 31 * 86_400}))
        .await;
    assert!(!h.walk("/v1/events", &key, 100).await.contains(&ev));
    let r = h.get(&format!("/v1/events/{ev}"), &key).await;
    assert_eq!(r.status, 400);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("30 days"));
}

#[tokio::test]
async fn events_can_arrive_late_and_twice() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let account = h.account(0);
    h.control(
        "PUT",
        "events",
        json!({"visibility_delay_secs": 600, "duplicate_rate": 1.0}),
    )
    .await;
    let r = h
        .control(
            "POST",
            "create",
            json!({"account": account, "mode": "test", "resource": "coupons", "count": 1}),
        )
        .await;
    let id = r["ids"][0].as_str().unwrap();
    let seen = |r: &common::Resp| {
        r.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["object"]["id"] == id)
            .count()
    };
    assert_eq!(
        seen(
            &h.get("/v1/events?type=coupon.created&limit=100", &key)
                .await
        ),
        0
    );
    h.control("POST", "clock/advance", json!({"seconds": 601}))
        .await;
    assert_eq!(
        seen(
            &h.get("/v1/events?type=coupon.created&limit=100", &key)
                .await
        ),
        2
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_the_reason() {
    let h = Harness::tiny().await;
    let key = h.key("live", 0);
    h.control("PUT", "rate_limits", json!({"enabled": true, "live_per_sec": 5.0, "test_per_sec": 5.0, "endpoint_per_sec": 100.0})).await;
    let mut limited = None;
    for _ in 0..20 {
        let r = h.get("/v1/customers", &key).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a 429 within 20 quick requests at 5/s");
    assert_eq!(r.json["error"]["code"], "rate_limit");
    assert_eq!(r.header("stripe-rate-limited-reason"), Some("global-rate"));
    h.sim.sim().set_rate_limits(RateLimits {
        enabled: true,
        live_per_sec: 100.0,
        test_per_sec: 100.0,
        endpoint_per_sec: 3.0,
    });
    let mut reasons = HashSet::new();
    let fresh = h.key("test", 0);
    for _ in 0..10 {
        let r = h.get("/v1/charges", &fresh).await;
        if let Some(reason) = r.header("stripe-rate-limited-reason") {
            reasons.insert(reason.to_string());
        }
    }
    assert!(reasons.contains("endpoint-rate"));
    assert!(h.sim.sim().stats().rate_limited >= 2);
}

#[tokio::test]
async fn injected_faults_look_like_stripes() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let rule = |kind, every| FaultRule {
        kind,
        probability: 0.0,
        every,
        latency_ms: 0,
    };
    h.sim
        .sim()
        .set_faults(vec![rule(FaultKind::LockTimeout, 2)]);
    assert_eq!(h.get("/v1/charges", &key).await.status, 200);
    let r = h.get("/v1/charges", &key).await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (429, Some("lock_timeout"))
    );
    assert_eq!(r.header("stripe-should-retry"), Some("true"));
    h.sim
        .sim()
        .set_faults(vec![rule(FaultKind::Unavailable, 1)]);
    let r = h.get("/v1/charges", &key).await;
    assert_eq!(
        (r.status, r.json["error"]["type"].as_str()),
        (503, Some("api_error"))
    );
    h.sim
        .sim()
        .set_faults(vec![rule(FaultKind::ServerError, 1)]);
    assert_eq!(h.get("/v1/charges", &key).await.status, 500);
    h.sim.sim().set_faults(vec![rule(FaultKind::Drop, 1)]);
    assert!(h
        .try_send("GET", "/v1/charges", Some(&key), &[], None)
        .await
        .is_err());
    h.sim.sim().set_faults(vec![rule(FaultKind::Truncate, 1)]);
    let e = h
        .try_send("GET", "/v1/charges?limit=20", Some(&key), &[], None)
        .await
        .err()
        .expect("truncated body fails");
    assert!(e.starts_with("body") || e.starts_with("json"), "{e}");
    h.sim.sim().set_faults(vec![]);
    assert_eq!(h.get("/v1/charges", &key).await.status, 200);
}

#[tokio::test]
async fn a_paused_api_holds_data_requests_until_resumed() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    h.control("PUT", "pause", json!({"paused": true})).await;
    let resumed = AtomicBool::new(false);
    let held = async {
        let r = h.get("/v1/charges", &key).await;
        (r.status, resumed.load(Ordering::SeqCst))
    };
    let resume = async {
        // Long enough for an unpaused request to be answered many times over; the control API
        // keeps answering meanwhile.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(h.control("GET", "clock", json!({})).await["now"].is_i64());
        // The key check is not held: a second client can start.
        assert_eq!(h.get("/v1/account", &key).await.status, 200);
        resumed.store(true, Ordering::SeqCst);
        h.control("PUT", "pause", json!({"paused": false})).await;
    };
    let ((status, answered_after_resume), ()) = tokio::join!(held, resume);
    assert_eq!(status, 200);
    assert!(answered_after_resume, "a request was answered while paused");
    assert_eq!(h.get("/v1/charges", &key).await.status, 200);
}

#[tokio::test]
async fn every_response_has_a_unique_request_id() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let mut seen = HashSet::new();
    for path in [
        "/v1/charges",
        "/v1/charges",
        "/v1/nope",
        "/v1/customers?limit=0",
    ] {
        let r = h.get(path, &key).await;
        let id = r.header("request-id").unwrap().to_string();
        assert!(id.starts_with("req_"));
        assert!(seen.insert(id));
    }
}

/// The Connect platform's id and its secret test-mode key.
fn platform_key(h: &Harness) -> (String, String) {
    let info = h.sim.info();
    let platform = info.account(AccountKind::Platform).unwrap().id.clone();
    let key = info
        .keys
        .iter()
        .find(|k| k.account == platform && k.kind == "secret" && k.mode == "test")
        .unwrap()
        .key
        .clone();
    (platform, key)
}

#[tokio::test]
async fn connect_platform_reads_connected_accounts() {
    let h = Harness::tiny().await;
    let info = h.sim.info();
    let (platform, pkey) = platform_key(&h);
    let connected: Vec<String> = info
        .accounts
        .iter()
        .filter(|a| a.kind == AccountKind::Connected)
        .map(|a| a.id.clone())
        .collect();
    let listed: HashSet<String> = h
        .walk("/v1/accounts", &pkey, 100)
        .await
        .into_iter()
        .collect();
    assert_eq!(listed, connected.iter().cloned().collect());
    let mine = h.get("/v1/customers?limit=100", &pkey).await.ids();
    let theirs = h
        .get_as(
            "/v1/customers?limit=100",
            &pkey,
            &[("stripe-account", &connected[0])],
        )
        .await;
    assert_eq!(theirs.status, 200);
    assert!(theirs.ids().iter().all(|id| !mine.contains(id)));
    let truth = h
        .truth_ids_newest_first(&connected[0], "test", "customers")
        .await;
    assert_eq!(
        h.walk("/v1/customers", &pkey, 100).await.len(),
        mine.len()
            .max(h.walk("/v1/customers", &pkey, 100).await.len())
    );
    assert_eq!(
        theirs.ids(),
        truth.into_iter().take(100).collect::<Vec<_>>()
    );
    h.control(
        "POST",
        "create",
        json!({"account": connected[0], "mode": "test", "resource": "customers", "count": 1}),
    )
    .await;
    let ev = h
        .get_as(
            "/v1/events?limit=1",
            &pkey,
            &[("stripe-account", &connected[0])],
        )
        .await;
    assert_eq!(ev.json["data"][0]["account"], connected[0].as_str());
    // Platform transfers and application fees point at connected accounts.
    let transfers = h.truth(&platform, "test", "transfers").await;
    assert!(!transfers.is_empty());
    assert!(transfers
        .iter()
        .all(|(_, _, t)| connected.contains(&t["destination"].as_str().unwrap().to_string())));
    // A standard account's key cannot act for someone else's connected account.
    let r = h
        .get_as(
            "/v1/customers",
            &h.key("test", 0),
            &[("stripe-account", &connected[0])],
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn generated_data_is_varied_and_self_consistent() {
    let h = Harness::start(SimConfig {
        objects: 400,
        ..SimConfig::tiny()
    })
    .await;
    let account = h.account(0);
    let truth = |r: &'static str| {
        let h = &h;
        let account = account.clone();
        async move {
            h.truth(&account, "live", r)
                .await
                .into_iter()
                .map(|(_, _, o)| o)
                .collect::<Vec<Value>>()
        }
    };
    let statuses = |objs: &[Value]| {
        objs.iter()
            .map(|o| o["status"].as_str().unwrap_or("").to_string())
            .collect::<HashSet<_>>()
    };
    let subs = truth("subscriptions").await;
    for s in [
        "active",
        "canceled",
        "trialing",
        "past_due",
        "unpaid",
        "incomplete",
        "incomplete_expired",
        "paused",
    ] {
        assert!(statuses(&subs).contains(s), "subscription status {s}");
    }
    let charges = truth("charges").await;
    for s in ["succeeded", "failed", "pending"] {
        assert!(statuses(&charges).contains(s), "charge status {s}");
    }
    assert!(charges.iter().any(|c| c["refunded"] == true));
    assert!(charges.iter().any(|c| c["disputed"] == true));
    let payouts = truth("payouts").await;
    for s in ["paid", "failed", "canceled", "pending", "in_transit"] {
        assert!(statuses(&payouts).contains(s), "payout status {s}");
    }
    let invoices = truth("invoices").await;
    for s in ["draft", "open", "paid", "void", "uncollectible"] {
        assert!(statuses(&invoices).contains(s), "invoice status {s}");
    }
    for (r, expect) in [
        (
            "payment_intents",
            &[
                "succeeded",
                "requires_payment_method",
                "processing",
                "requires_capture",
                "canceled",
                "requires_action",
            ][..],
        ),
        (
            "disputes",
            &["won", "lost", "needs_response", "under_review"][..],
        ),
        (
            "setup_intents",
            &["succeeded", "canceled", "requires_payment_method"][..],
        ),
        ("refunds", &["succeeded", "pending"][..]),
    ] {
        let got = statuses(&truth(r).await);
        for s in expect {
            assert!(got.contains(*s), "{r} status {s}");
        }
    }
    // References resolve.
    let ids = |objs: &[Value]| {
        objs.iter()
            .map(|o| o["id"].as_str().unwrap().to_string())
            .collect::<HashSet<_>>()
    };
    let customers = ids(&truth("customers").await);
    let bts = ids(&truth("balance_transactions").await);
    let pis = ids(&truth("payment_intents").await);
    let charge_ids = ids(&charges);
    let sub_ids = ids(&subs);
    for c in &charges {
        if let Some(cu) = c["customer"].as_str() {
            assert!(customers.contains(cu));
        }
        if let Some(bt) = c["balance_transaction"].as_str() {
            assert!(bts.contains(bt));
        }
        assert!(pis.contains(c["payment_intent"].as_str().unwrap()));
    }
    for r in truth("refunds").await {
        assert!(charge_ids.contains(r["charge"].as_str().unwrap()));
    }
    for i in &invoices {
        assert!(customers.contains(i["customer"].as_str().unwrap()));
        if let Some(s) = i["subscription"].as_str() {
            assert!(sub_ids.contains(s));
        }
    }
    // Metadata from none to many keys, with non-ASCII text.
    let custs = truth("customers").await;
    let sizes: Vec<usize> = custs
        .iter()
        .map(|c| c["metadata"].as_object().unwrap().len())
        .collect();
    assert!(sizes.contains(&0) && sizes.iter().any(|n| *n > 20));
    assert!(custs.iter().any(|c| !c["metadata"].to_string().is_ascii()));
    // Several years of history, and bursts of objects in the same second.
    let created: Vec<i64> = charges
        .iter()
        .map(|c| c["created"].as_i64().unwrap())
        .collect();
    let span = created.iter().max().unwrap() - created.iter().min().unwrap();
    assert!(span > 2 * 365 * 86_400, "history spans {span} s");
    let mut per_second = std::collections::HashMap::new();
    for t in &created {
        *per_second.entry(t).or_insert(0) += 1;
    }
    assert!(per_second.values().any(|n| *n >= 5), "bursts in one second");
}

#[tokio::test]
async fn lists_a_parent_owns_are_paged_whole_and_included_when_expanded() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let account = h.account(0);
    let owners: Vec<(stripe_sim::Res, &str)> = stripe_sim::Res::all()
        .filter_map(|r| Some((r, r.owned()?)))
        .collect();
    assert!(owners.len() >= 4, "invoices and three owners of line items");
    let mut longest = 0;
    for (res, segment) in owners {
        let path = res.def().path;
        let mut parents = h.truth(&account, "test", path).await;
        parents.retain(|(_, deleted, _)| !deleted);
        // The parent with the most items: the truth holds its whole list.
        let Some((id, _, obj)) = parents
            .iter()
            .max_by_key(|(_, _, o)| o[segment]["data"].as_array().map_or(0, Vec::len))
        else {
            panic!("/v1/{path} has objects");
        };
        let want: Vec<String> = obj[segment]["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {segment} in the truth"))
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        assert!(!want.is_empty(), "{path}: {id} has {segment}");
        longest = longest.max(want.len());
        let under = format!("/v1/{path}/{id}/{segment}");
        assert_eq!(h.walk(&under, &key, 2).await, want, "{under}");
        let none = format!("/v1/{path}/nope_1/{segment}");
        assert_eq!(h.get(&none, &key).await.status, 404, "{none}");
        // Included on request: the first page, and whether there is more.
        let one = h
            .get(&format!("/v1/{path}/{id}?expand[]={segment}"), &key)
            .await;
        assert_eq!(one.status, 200, "{}", one.json);
        let included: Vec<&str> = one.json[segment]["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["id"].as_str())
            .collect();
        let first: Vec<&str> = want.iter().take(10).map(String::as_str).collect();
        assert_eq!(included, first, "{path}");
        assert_eq!(
            one.json[segment]["has_more"],
            json!(want.len() > 10),
            "{path}"
        );
        if res != stripe_sim::Res::Invoice {
            // Not included unless asked for, as Stripe does, in a list too.
            let plain = h.get(&format!("/v1/{path}/{id}"), &key).await;
            assert!(plain.json.get(segment).is_none(), "{path}: {}", plain.json);
            let listed = h
                .get(
                    &format!("/v1/{path}?limit=100&expand[]=data.{segment}"),
                    &key,
                )
                .await;
            assert_eq!(listed.status, 200, "{}", listed.json);
            let page = listed.json["data"].as_array().unwrap();
            assert!(
                page.iter().all(|p| p[segment]["object"] == "list"),
                "{path}"
            );
        }
    }
    assert!(longest > 10, "a list longer than a page: {longest}");
}

#[tokio::test]
async fn every_list_of_the_spec_pages_its_objects_and_products_gate_theirs() {
    let h = Harness::tiny().await;
    let key = h.key("test", 0);
    let account = h.account(0);
    let mut served = 0;
    for res in stripe_sim::Res::all().filter(|r| r.generic().is_some()) {
        let def = res.def();
        let path = format!("/v1/{}", def.path);
        if let Some(n) = &res.generic().unwrap().nested {
            // A list under its parent's path: the parent's items, newest first; 404 for no parent.
            let resource = def.path.replace('{', "%7B").replace('}', "%7D");
            let mut items = h.truth(&account, "test", &resource).await;
            items.retain(|(_, deleted, _)| !deleted);
            let Some(parent) = items
                .iter()
                .find_map(|(_, _, o)| o[n.field].as_str().map(str::to_string))
            else {
                // Only where there are parents (application fees and transfers on platforms).
                let parents = h.truth(&account, "test", n.parent).await;
                assert!(parents.is_empty(), "{path} has objects");
                continue;
            };
            let mut want: Vec<String> = items
                .iter()
                .filter(|(_, _, o)| o[n.field] == *parent)
                .map(|(id, _, _)| id.clone())
                .collect();
            want.reverse();
            let under = format!("/v1/{}/{parent}/{}", n.parent, n.segment);
            assert_eq!(h.walk(&under, &key, 2).await, want, "{under}");
            let none = format!("/v1/{}/nope_1/{}", n.parent, n.segment);
            assert_eq!(h.get(&none, &key).await.status, 404, "{none}");
            if n.embedded {
                let p = h.get(&format!("/v1/{}/{parent}", n.parent), &key).await;
                let embedded: Vec<&str> = p.json[n.segment]["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|i| i["id"].as_str())
                    .collect();
                assert_eq!(
                    embedded,
                    want.iter().take(10).map(String::as_str).collect::<Vec<_>>()
                );
            }
            served += 1;
            continue;
        }
        if let Some((param, _)) = res.generic().unwrap().parents.first() {
            // A list of a parent's children needs the parent (400 without it, as Stripe answers).
            let r = h.get(&path, &key).await;
            assert_eq!(
                (r.status, r.json["error"]["code"].as_str()),
                (400, Some("parameter_missing")),
                "{path}"
            );
            assert_eq!(r.json["error"]["param"], *param, "{path}");
            continue;
        }
        let truth = h.truth_ids_newest_first(&account, "test", def.path).await;
        assert!(!truth.is_empty(), "{path} has objects");
        assert_eq!(h.walk(&path, &key, 2).await, truth, "{path}");
        let one = h.get(&format!("{path}/{}", truth[0]), &key).await;
        assert_eq!(
            (one.status, &one.json["id"]),
            (200, &json!(truth[0])),
            "{path}"
        );
        served += 1;
    }
    assert!(served >= 39, "{served} lists served");
    // The second account does not use Issuing, Treasury or Identity: Stripe's 400 saying so.
    let basic = h.key("test", 1);
    for (path, says) in [
        ("/v1/issuing/cards", "not set up to use Issuing"),
        (
            "/v1/identity/verification_sessions",
            "not set up to use Identity",
        ),
        (
            "/v1/treasury/financial_accounts",
            "Have you onboarded to Treasury?",
        ),
    ] {
        let r = h.get(path, &basic).await;
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(r.json["error"]["type"], "invalid_request_error");
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{path}: {message}");
        assert_eq!(h.get(path, &key).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn a_platform_reads_its_connected_accounts_external_accounts_persons_and_capabilities() {
    let h = Harness::tiny().await;
    let (platform, pkey) = platform_key(&h);
    let accounts = h.truth(&platform, "test", "accounts").await;
    let kinds: HashSet<&str> = accounts
        .iter()
        .map(|(_, _, a)| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, HashSet::from(["custom", "express"]));
    for (id, _, truth) in &accounts {
        let ids = |v: &Value| -> Vec<String> {
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect()
        };
        // External accounts: the object embeds the first 10 and says whether there are more;
        // the list pages them all, bank accounts and cards mixed, each naming the account.
        let external = ids(&truth["external_accounts"]);
        let one = h.get(&format!("/v1/accounts/{id}"), &pkey).await;
        assert_eq!(one.status, 200, "{}", one.json);
        let embedded = ids(&one.json["external_accounts"]);
        assert_eq!(
            embedded,
            external.iter().take(10).cloned().collect::<Vec<_>>()
        );
        assert_eq!(
            one.json["external_accounts"]["has_more"],
            json!(external.len() > 10)
        );
        let path = format!("/v1/accounts/{id}/external_accounts");
        assert_eq!(h.walk(&path, &pkey, 4).await, external, "{path}");
        let objects: HashSet<&str> = truth["external_accounts"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .inspect(|i| assert_eq!(i["account"], json!(id)))
            .map(|i| i["object"].as_str().unwrap())
            .collect();
        // Capabilities: one per entry of the account's map, with its status.
        let path = format!("/v1/accounts/{id}/capabilities");
        let caps = h.get(&path, &pkey).await;
        assert_eq!(caps.status, 200, "{}", caps.json);
        let statuses: serde_json::Map<String, Value> = caps.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_string(), c["status"].clone()))
            .collect();
        assert_eq!(Value::Object(statuses), truth["capabilities"], "{path}");
        assert_eq!(ids(&caps.json), ids(&truth["account_capabilities"]));
        // Persons: a Custom account's are the platform's to read; the others' are refused.
        let path = format!("/v1/accounts/{id}/persons");
        if truth["type"] == "custom" {
            assert!(
                external.len() > 10,
                "a Custom account pages its external accounts"
            );
            assert_eq!(objects, HashSet::from(["bank_account", "card"]));
            let persons = ids(&truth["persons"]);
            assert_eq!(persons.len(), 3);
            assert_eq!(h.walk(&path, &pkey, 2).await, persons, "{path}");
        } else {
            let r = h.get(&path, &pkey).await;
            assert_eq!(r.status, 403, "{path}: {}", r.json);
            assert_eq!(truth["persons"]["data"], json!([]));
        }
    }
    // Not the platform's account: 404, as for any object it does not have.
    let r = h.get("/v1/accounts/acct_1nope/persons", &pkey).await;
    assert_eq!(r.status, 404, "{}", r.json);
}

#[tokio::test]
async fn every_recurring_price_is_a_plan_with_the_same_id_and_changes_with_it() {
    let h = Harness::tiny().await;
    let (key, account) = (h.key("test", 0), h.account(0));
    let plans = |prices: &[(String, bool, Value)]| -> BTreeMap<String, Value> {
        prices
            .iter()
            .filter(|(_, _, p)| p["type"] == "recurring")
            .map(|(id, _, p)| {
                let r = &p["recurring"];
                let want = json!({"amount": p["unit_amount"], "currency": p["currency"], "product": p["product"],
                    "interval": r["interval"], "interval_count": r["interval_count"], "nickname": p["nickname"],
                    "metadata": p["metadata"], "active": p["active"], "created": p["created"]});
                (id.clone(), want)
            })
            .collect()
    };
    let shown = |listed: &[(String, bool, Value)]| -> BTreeMap<String, Value> {
        listed
            .iter()
            .map(|(id, _, p)| {
                let got = json!({"amount": p["amount"], "currency": p["currency"], "product": p["product"],
                    "interval": p["interval"], "interval_count": p["interval_count"], "nickname": p["nickname"],
                    "metadata": p["metadata"], "active": p["active"], "created": p["created"]});
                (id.clone(), got)
            })
            .collect()
    };
    let prices = h.truth(&account, "test", "prices").await;
    let want = plans(&prices);
    assert!(want.len() >= 2, "the tiny profile has recurring prices");
    assert_eq!(shown(&h.truth(&account, "test", "plans").await), want);
    let listed = h.walk("/v1/plans", &key, 100).await;
    assert_eq!(
        listed,
        h.truth_ids_newest_first(&account, "test", "plans").await
    );
    // A change of either is a change of both, with both events.
    let plan = want.keys().next().unwrap().clone();
    h.control(
        "POST",
        "update",
        json!({"account": account, "mode": "test", "resource": "plans", "ids": [plan]}),
    )
    .await;
    let after = plans(&h.truth(&account, "test", "prices").await);
    assert_ne!(after[&plan], want[&plan], "the price changed");
    assert_eq!(shown(&h.truth(&account, "test", "plans").await), after);
    let events = h.get("/v1/events?limit=2", &key).await;
    let kinds: BTreeSet<&str> = events.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["plan.updated", "price.updated"]));
    // Deleting one deletes the other; neither changes afterwards.
    h.control(
        "POST",
        "delete",
        json!({"account": account, "mode": "test", "resource": "plans", "ids": [plan]}),
    )
    .await;
    for resource in ["plans", "prices"] {
        let truth = h.truth(&account, "test", resource).await;
        assert!(
            truth.iter().any(|(id, deleted, _)| *id == plan && *deleted),
            "{resource}"
        );
    }
    let r = h
        .try_send(
            "POST",
            "/_sim/update",
            None,
            &[],
            Some(json!({"account": account, "mode": "test", "resource": "prices", "ids": [plan]})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "a deleted price cannot change: {}", r.json);
    // Creating a plan creates a recurring price.
    let made = h
        .control(
            "POST",
            "create",
            json!({"account": account, "mode": "test", "resource": "plans", "count": 1}),
        )
        .await;
    let id = made["ids"][0].as_str().unwrap();
    let price = h.get(&format!("/v1/prices/{id}"), &key).await;
    assert_eq!(price.json["type"], "recurring", "{}", price.json);
    assert_eq!(h.get(&format!("/v1/plans/{id}"), &key).await.status, 200);
}
