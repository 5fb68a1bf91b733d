//! Test harness: a simulator on a loopback port and a plain HTTP client for it.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use stripe_sim::{AccountKind, RunningSim, SimConfig};

pub struct Harness {
    pub sim: RunningSim,
    http: Client<HttpConnector, Full<Bytes>>,
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn ids(&self) -> Vec<String> {
        self.json["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|o| o["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Harness {
    pub async fn start(config: SimConfig) -> Harness {
        let sim = stripe_sim::start(config).await.expect("simulator starts");
        Harness {
            sim,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn tiny() -> Harness {
        Harness::start(SimConfig::tiny()).await
    }

    /// The secret key of the `n`-th keyed account in `mode`.
    pub fn key(&self, mode: &str, n: usize) -> String {
        self.sim.info().key("secret", mode, n).expect("key exists")
    }

    pub fn account(&self, n: usize) -> String {
        self.sim
            .info()
            .accounts
            .iter()
            .filter(|a| a.kind != AccountKind::Connected)
            .nth(n)
            .unwrap()
            .id
            .clone()
    }

    /// Sends a request; `Err` when the connection or body fails.
    pub async fn try_send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Resp, String> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.sim.base_url()));
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = body
            .map(|b| Bytes::from(serde_json::to_vec(&b).unwrap()))
            .unwrap_or_default();
        let resp = self
            .http
            .request(req.body(Full::new(body)).unwrap())
            .await
            .map_err(|e| format!("request: {e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        let json = serde_json::from_slice(&bytes)
            .map_err(|e| format!("json: {e}: {}", String::from_utf8_lossy(&bytes)))?;
        Ok(Resp {
            status,
            headers,
            json,
        })
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.try_send("GET", path, Some(key), &[], None)
            .await
            .unwrap()
    }

    pub async fn get_as(&self, path: &str, key: &str, headers: &[(&str, &str)]) -> Resp {
        self.try_send("GET", path, Some(key), headers, None)
            .await
            .unwrap()
    }

    /// A control-API call; panics unless it answers 200.
    pub async fn control(&self, method: &str, path: &str, body: Value) -> Value {
        let r = self
            .try_send(method, &format!("/_sim/{path}"), None, &[], Some(body))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "control {path}: {}", r.json);
        r.json
    }

    /// Walks a whole list newest-first with `starting_after`; returns every id.
    pub async fn walk(&self, path: &str, key: &str, limit: usize) -> Vec<String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut ids: Vec<String> = Vec::new();
        loop {
            let cursor = ids
                .last()
                .map(|c| format!("&starting_after={c}"))
                .unwrap_or_default();
            let r = self
                .get(&format!("{path}{sep}limit={limit}{cursor}"), key)
                .await;
            assert_eq!(r.status, 200, "{path}: {}", r.json);
            ids.extend(r.ids());
            if !r.json["has_more"].as_bool().unwrap() {
                return ids;
            }
        }
    }

    /// Ground truth of a resource: (id, deleted, object).
    pub async fn truth(
        &self,
        account: &str,
        mode: &str,
        resource: &str,
    ) -> Vec<(String, bool, Value)> {
        let r = self
            .try_send(
                "GET",
                &format!("/_sim/truth?account={account}&mode={mode}&resource={resource}"),
                None,
                &[],
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.json);
        r.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["id"].as_str().unwrap().to_string(),
                    o["deleted"].as_bool().unwrap(),
                    o["object"].clone(),
                )
            })
            .collect()
    }

    /// Live ids of the truth, in Stripe's list order (newest first, same-second ties newest-inserted first).
    pub async fn truth_ids_newest_first(
        &self,
        account: &str,
        mode: &str,
        resource: &str,
    ) -> Vec<String> {
        let mut t: Vec<(String, bool, Value)> = self.truth(account, mode, resource).await;
        t.retain(|(_, deleted, _)| !deleted);
        t.reverse();
        t.into_iter().map(|(id, _, _)| id).collect()
    }
}
