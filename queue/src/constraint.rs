//! Placement constraints and preferences of a task, matched against a worker's
//! attributes (its `--labels` plus the built-in ones it discovers: [`BUILTIN_ATTRIBUTES`]).
//! Pure: parsing (`zone=a`, `disk!=hdd`, `gpu.model in (a100,h100)`, `gpu.model not in
//! (k80)`, `ssd exists`), validation and matching; placement calls [`Constraint::matches`].
//!
//! A key the worker does not have fails `=`, `in` and `exists` and passes `!=` and
//! `not in` (as Kubernetes' `NotIn` does): "not on an hdd" holds on a worker that says
//! nothing about its disk.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{QueueError, Result};

/// Attributes every worker discovers itself; a worker label may not use these names.
pub const BUILTIN_ATTRIBUTES: [&str; 6] = [
    "os",
    "arch",
    "hostname",
    "docker.version",
    "gpu.model",
    "gpu.memory",
];
/// Most constraints (and, separately, preferences) one task may give.
pub const MAX_CONSTRAINTS: usize = 32;
/// Most values in one `in (...)` list.
pub const MAX_VALUES: usize = 64;
/// Most bytes in a key or a value.
pub const MAX_TERM_BYTES: usize = 128;

/// How a constraint compares the worker's attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// The attribute equals the one value.
    Eq,
    /// The attribute is absent or differs from the one value.
    Ne,
    /// The attribute is one of the values.
    In,
    /// The attribute is absent or none of the values.
    NotIn,
    /// The worker has the attribute (any value).
    Exists,
}

/// One hard requirement: a worker that fails it never gets the task.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Constraint {
    /// Attribute name.
    pub key: String,
    /// Comparison.
    pub op: Op,
    /// One value for `=`/`!=`, one or more for `in`/`not in`, none for `exists`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// One soft preference (`--prefer KEY=VALUE`): among the workers that may take the task,
/// those matching more preferences come first.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Preference {
    /// Attribute name.
    pub key: String,
    /// The value preferred.
    pub value: String,
}

impl Constraint {
    /// Whether a worker whose attribute `key` is `attr` (None: absent) satisfies it.
    pub fn holds(&self, attr: Option<&str>) -> bool {
        match (self.op, attr) {
            (Op::Exists, a) => a.is_some(),
            (Op::Eq | Op::In, Some(a)) => self.values.iter().any(|v| v == a),
            (Op::Eq | Op::In, None) => false,
            (Op::Ne | Op::NotIn, Some(a)) => !self.values.iter().any(|v| v == a),
            (Op::Ne | Op::NotIn, None) => true,
        }
    }

    /// Whether a worker with these attributes satisfies it.
    pub fn matches(&self, attrs: &BTreeMap<String, String>) -> bool {
        self.holds(attrs.get(&self.key).map(String::as_str))
    }

    /// Checks the key, the values and their count against the operator.
    pub fn validate(&self) -> Result<()> {
        check_term("constraint", "key", &self.key)?;
        let n = self.values.len();
        let ok = match self.op {
            Op::Eq | Op::Ne => n == 1,
            Op::In | Op::NotIn => (1..=MAX_VALUES).contains(&n),
            Op::Exists => n == 0,
        };
        if !ok {
            return Err(QueueError::invalid(
                "constraint",
                format!("{self}: wrong number of values ({n}) for its operator"),
            ));
        }
        for v in &self.values {
            check_term("constraint", "value", v)?;
        }
        Ok(())
    }
}

impl Preference {
    /// Whether a worker with these attributes has the preferred value.
    pub fn matches(&self, attrs: &BTreeMap<String, String>) -> bool {
        attrs.get(&self.key) == Some(&self.value)
    }
}

/// A key or value: 1 to 128 bytes of letters, digits and `. _ - / :`; values may also
/// hold spaces inside (GPU model names), never `,` `(` `)` `=` `!`.
fn check_term(field: &'static str, what: &str, s: &str) -> Result<()> {
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '_' | '-' | '/' | ':')
            || (what == "value" && c == ' ')
    };
    if s.is_empty() || s.len() > MAX_TERM_BYTES || s.trim() != s || !s.chars().all(allowed) {
        return Err(QueueError::invalid(
            field,
            format!("{what} {s:?} must be 1 to {MAX_TERM_BYTES} letters, digits or . _ - / :"),
        ));
    }
    Ok(())
}

/// Checks a task's constraints and preferences: each one, and how many.
pub fn validate_all(constraints: &[Constraint], prefer: &[Preference]) -> Result<()> {
    if constraints.len() > MAX_CONSTRAINTS || prefer.len() > MAX_CONSTRAINTS {
        return Err(QueueError::invalid(
            "constraint",
            format!("at most {MAX_CONSTRAINTS} constraints and {MAX_CONSTRAINTS} preferences"),
        ));
    }
    for c in constraints {
        c.validate()?;
    }
    for p in prefer {
        check_term("prefer", "key", &p.key)?;
        check_term("prefer", "value", &p.value)?;
    }
    Ok(())
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = || self.values.join(",");
        match self.op {
            Op::Eq => write!(f, "{}={}", self.key, list()),
            Op::Ne => write!(f, "{}!={}", self.key, list()),
            Op::In => write!(f, "{} in ({})", self.key, list()),
            Op::NotIn => write!(f, "{} not in ({})", self.key, list()),
            Op::Exists => write!(f, "{} exists", self.key),
        }
    }
}

impl fmt::Display for Preference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// What a constraint expression may look like, for error messages.
const FORMS: &str = "KEY=VALUE, KEY!=VALUE, 'KEY in (A,B)', 'KEY not in (A,B)' or 'KEY exists'";

impl FromStr for Constraint {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Constraint> {
        let bad = || QueueError::invalid("constraint", format!("{s:?} is not one of {FORMS}"));
        let s = s.trim();
        let c = if let Some((k, v)) = s.split_once("!=") {
            Constraint {
                key: k.trim().into(),
                op: Op::Ne,
                values: vec![v.trim().into()],
            }
        } else if let Some((k, v)) = s.split_once('=') {
            Constraint {
                key: k.trim().into(),
                op: Op::Eq,
                values: vec![v.trim().into()],
            }
        } else if let Some(k) = s.strip_suffix(" exists") {
            Constraint {
                key: k.trim().into(),
                op: Op::Exists,
                values: Vec::new(),
            }
        } else {
            let (head, list) = s.split_once('(').ok_or_else(bad)?;
            let list = list.strip_suffix(')').ok_or_else(bad)?;
            let words: Vec<&str> = head.split_whitespace().collect();
            let (key, op) = match words.as_slice() {
                [k, "in"] => (*k, Op::In),
                [k, "not", "in"] => (*k, Op::NotIn),
                _ => return Err(bad()),
            };
            Constraint {
                key: key.into(),
                op,
                values: list.split(',').map(|v| v.trim().to_string()).collect(),
            }
        };
        c.validate()?;
        Ok(c)
    }
}

impl FromStr for Preference {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Preference> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| QueueError::invalid("prefer", format!("{s:?} is not KEY=VALUE")))?;
        let p = Preference {
            key: k.trim().into(),
            value: v.trim().into(),
        };
        validate_all(&[], std::slice::from_ref(&p))?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn c(s: &str) -> Constraint {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_form_parses_and_prints_back() {
        for (text, op, n) in [
            ("zone=a", Op::Eq, 1),
            ("disk!=hdd", Op::Ne, 1),
            ("gpu.model in (a100,h100)", Op::In, 2),
            ("gpu.model not in (k80)", Op::NotIn, 1),
            ("ssd exists", Op::Exists, 0),
        ] {
            let parsed = c(text);
            assert_eq!((parsed.op, parsed.values.len()), (op, n), "{text}");
            assert_eq!(parsed.to_string(), text);
            assert_eq!(c(&parsed.to_string()), parsed);
        }
        assert_eq!(c(" zone = a ").values, ["a"]);
        assert_eq!(c("m in ( a , b )").values, ["a", "b"]);
    }

    #[test]
    fn matching_follows_the_documented_rule_for_absent_keys() {
        let w = attrs(&[("zone", "a"), ("gpu.model", "a100")]);
        let none = attrs(&[]);
        for (text, on_w, on_none) in [
            ("zone=a", true, false),
            ("zone=b", false, false),
            ("zone!=a", false, true),
            ("zone!=b", true, true),
            ("gpu.model in (a100,h100)", true, false),
            ("gpu.model in (h100)", false, false),
            ("gpu.model not in (a100)", false, true),
            ("gpu.model not in (k80)", true, true),
            ("zone exists", true, false),
        ] {
            assert_eq!(c(text).matches(&w), on_w, "{text} on w");
            assert_eq!(c(text).matches(&none), on_none, "{text} on none");
        }
    }

    #[test]
    fn bad_expressions_name_the_problem() {
        for bad in [
            "",
            "zone",
            "zone in a,b",
            "zone in (a",
            "zone maybe (a)",
            "=a",
            "zone=",
            "zone=a,b",
            "zo ne=a",
            "zone in ()",
            "zone in (a,,b)",
            "a in (b) c",
        ] {
            let e = bad.parse::<Constraint>().unwrap_err().to_string();
            assert!(e.contains("constraint"), "{bad:?}: {e}");
        }
        let long = format!("k={}", "v".repeat(MAX_TERM_BYTES + 1));
        assert!(long.parse::<Constraint>().is_err());
        let many = format!(
            "k in ({})",
            (0..=MAX_VALUES)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(many.parse::<Constraint>().is_err());
        assert!("gpu.model=NVIDIA A100-SXM4-40GB"
            .parse::<Constraint>()
            .is_ok());
    }

    #[test]
    fn decoded_constraints_are_validated_too() {
        let wrong_arity = Constraint {
            key: "k".into(),
            op: Op::Exists,
            values: vec!["x".into()],
        };
        assert!(wrong_arity.validate().is_err());
        let too_many = vec![c("a=b"); MAX_CONSTRAINTS + 1];
        assert!(validate_all(&too_many, &[]).is_err());
        assert!(validate_all(&[c("a=b")], &["zone=a".parse().unwrap()]).is_ok());
    }

    #[test]
    fn preferences_parse_and_match() {
        let p: Preference = "zone=a".parse().unwrap();
        assert!(p.matches(&attrs(&[("zone", "a")])));
        assert!(!p.matches(&attrs(&[("zone", "b")])));
        assert!(!p.matches(&attrs(&[])));
        assert!("zone".parse::<Preference>().is_err());
        assert!("=a".parse::<Preference>().is_err());
    }
}
