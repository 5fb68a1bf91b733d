//! The HTTPS client the API clients share (Stripe's, Snowflake's): pooled HTTP/1.1 connections over
//! rustls with the webpki roots, plain HTTP allowed for the emulators the tests start.

use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A pooled client whose requests carry bodies of type `B`.
pub type HttpsClient<B> = Client<hyper_rustls::HttpsConnector<HttpConnector>, B>;

/// A new pooled client.
pub fn client<B>() -> HttpsClient<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    // ring, named explicitly: when the AWS crates are linked too, rustls has two providers and
    // would refuse to pick one.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .expect("ring's default provider supports TLS 1.2 and 1.3")
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https)
}
