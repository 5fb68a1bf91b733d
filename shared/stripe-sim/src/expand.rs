//! `expand[]`: replacing reference ids with the objects they name, as Stripe does, up to four levels.

use crate::error::ApiError;
use crate::resources::Res;
use crate::scope::Scope;
use serde_json::{json, Value};

/// Stripe refuses expansions deeper than this.
pub const MAX_DEPTH: usize = 4;

/// Checks every path against the resources' expandable fields before any data is read.
pub fn validate(res: Res, paths: &[String], list: bool) -> Result<(), ApiError> {
    for path in paths {
        let shown = if list {
            format!("data.{path}")
        } else {
            path.clone()
        };
        let segments: Vec<&str> = path.split('.').collect();
        if segments.len() > MAX_DEPTH {
            return Err(ApiError::invalid(None, format!("You cannot expand more than {MAX_DEPTH} levels of a property. Property: {shown}")).param("expand"));
        }
        let mut current = Some(res);
        for seg in segments {
            let Some(r) = current else {
                // Behind a polymorphic reference the target type is only known per object.
                return Err(ApiError::invalid(
                    None,
                    format!("This property cannot be expanded ({shown})."),
                )
                .param("expand"));
            };
            match r.def().refs.iter().find(|(name, _)| *name == seg) {
                Some((_, target)) => current = *target,
                None => {
                    return Err(ApiError::invalid(
                        None,
                        format!("This property cannot be expanded ({shown})."),
                    )
                    .param("expand"))
                }
            }
        }
    }
    Ok(())
}

/// Expands `path` (already validated) inside `obj`, which lives in `scope`.
pub fn apply(scope: &Scope, res: Res, obj: &mut Value, path: &str) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let target = res
        .def()
        .refs
        .iter()
        .find(|(name, _)| *name == head)
        .and_then(|(_, t)| *t);
    let Some(id) = obj.get(head).and_then(Value::as_str).map(str::to_string) else {
        // Null references stay null; an already expanded object is expanded further.
        if let (Some(rest), Some(t)) = (rest, target) {
            if obj[head].is_object() {
                apply(scope, t, &mut obj[head], rest);
            }
        }
        return;
    };
    let Some(target) = target.or_else(|| Res::from_id(&id)) else {
        return;
    };
    let Some(row) = scope.table(target).get(&id) else {
        return;
    };
    let mut child: Value = if row.deleted {
        json!({"id": id, "object": target.def().object, "deleted": true})
    } else {
        serde_json::from_slice(&row.json).unwrap_or(Value::Null)
    };
    if let Some(rest) = rest {
        apply(scope, target, &mut child, rest);
    }
    obj[head] = child;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_reference_types() {
        assert!(validate(Res::Charge, &["customer".into()], true).is_ok());
        assert!(validate(Res::Charge, &["balance_transaction.source".into()], true).is_ok());
        assert!(validate(Res::Refund, &["charge.customer".into()], true).is_ok());
        assert!(validate(Res::Charge, &["amount".into()], true).is_err());
        let deep = "payment_intent.latest_charge.payment_intent.latest_charge.customer".to_string();
        let e = validate(Res::Charge, &[deep], true).unwrap_err();
        assert!(e.message.contains("more than 4 levels"));
    }
}
