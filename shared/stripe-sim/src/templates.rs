//! Object templates: Stripe's own example objects for API 2023-08-16 (`data/fixtures3.2023-08-16.json`,
//! copied from Stripe's OpenAPI repository). Starting every generated object from Stripe's example gives
//! each object the full field set of its type; the generator then overwrites the values.

use serde_json::{Map, Value};
use std::sync::OnceLock;

static FIXTURES: &str = include_str!("../data/fixtures3.2023-08-16.json");

fn all() -> &'static Map<String, Value> {
    static PARSED: OnceLock<Map<String, Value>> = OnceLock::new();
    PARSED.get_or_init(|| {
        let mut root: Value = serde_json::from_str(FIXTURES).unwrap_or_default();
        match root["resources"].take() {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    })
}

/// A fresh copy of Stripe's example object of type `name` (`charge`, `invoice`, …); `{}` if unknown.
pub fn template(name: &str) -> Value {
    all()
        .get(name)
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_simulated_object_type_has_a_template() {
        for res in crate::resources::Res::all() {
            let t = super::template(res.def().object);
            assert_eq!(t["object"], res.def().object, "{}", res.def().object);
        }
        assert_eq!(super::template("account")["object"], "account");
        assert_eq!(super::template("line_item")["object"], "line_item");
    }
}
