//! Quantities with units in scenario files: durations (`250ms`, `30s`, `5m`, `2h`), bandwidths
//! (`20MB/s`, `10Mbit/s`) and plain numbers, each either fixed or drawn from a distribution.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::dist::Dist;

/// A kind of quantity: how its text parses into the engine's base unit.
pub trait Unit {
    /// What the quantity is, for messages: "a duration like `30s`".
    const EXPECTED: &'static str;
    /// JSON Schema of one written value.
    fn schema() -> Schema;
    /// Parses a written value into the base unit.
    fn parse(s: &str) -> Result<f64, String>;
    /// Takes a bare number, if the unit allows one.
    fn number(v: f64) -> Result<f64, String>;
    /// Checks a value in base units against the unit's range (finite and not negative unless
    /// the unit says otherwise).
    fn check(v: f64) -> Result<f64, String> {
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(format!("expected {}, found {v}", Self::EXPECTED))
        }
    }
}

/// The widest lognormal a scenario may give: at sigma 10 a draw two deviations out is already
/// half a billion times the median.
pub const MAX_SIGMA: f64 = 10.0;

/// The longest duration a scenario may give, in microseconds: 100 years of virtual time.
/// Virtual time is kept in microseconds in a `u64`, which a few hundred thousand years would
/// overflow; 100 years leaves room for any sum of them.
pub const MAX_DURATION_US: f64 = 100.0 * 365.25 * 86_400e6;

/// Virtual time, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Time;

impl Unit for Time {
    const EXPECTED: &'static str = "a duration like `250ms`, `30s`, `5m` or `2h`";
    fn schema() -> Schema {
        json_schema!({"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*(us|µs|ms|s|m|min|h|d)\s*$", "description": Self::EXPECTED})
    }
    fn parse(s: &str) -> Result<f64, String> {
        let (num, unit) = split_number(s)?;
        let scale = match unit {
            "us" | "µs" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            "m" | "min" => 60e6,
            "h" => 3600e6,
            "d" => 86_400e6,
            "" => return Err(format!("`{s}` has no unit; write {}", Self::EXPECTED)),
            other => {
                return Err(format!(
                    "unknown time unit `{other}` in `{s}`; use us, ms, s, m, h or d"
                ))
            }
        };
        Ok(num * scale)
    }
    fn number(v: f64) -> Result<f64, String> {
        if v == 0.0 {
            Ok(0.0)
        } else {
            Err(format!(
                "`{v}` has no unit; write {} (for example `{v}s`)",
                Self::EXPECTED
            ))
        }
    }
    fn check(v: f64) -> Result<f64, String> {
        if v.is_finite() && (0.0..=MAX_DURATION_US).contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "a duration of {} is past the limit of 100 years of virtual time",
                if v.is_finite() {
                    format!("{}s", v / 1e6)
                } else {
                    "infinity".into()
                }
            ))
        }
    }
}

/// Bandwidth, in bytes per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate;

impl Unit for Rate {
    const EXPECTED: &'static str = "a bandwidth like `20MB/s`, `512kB/s` or `10Mbit/s`";
    fn schema() -> Schema {
        json_schema!({"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]+)?\s*[kKMGT]?i?(B|bit)/s|unlimited)\s*$", "description": Self::EXPECTED})
    }
    fn parse(s: &str) -> Result<f64, String> {
        if s.trim() == "unlimited" {
            return Ok(f64::INFINITY);
        }
        let (num, unit) = split_number(s)?;
        let Some(unit) = unit.strip_suffix("/s") else {
            return Err(format!("`{s}` is not a rate; write {}", Self::EXPECTED));
        };
        let (prefix, bits) = match unit.strip_suffix("bit") {
            Some(p) => (p, true),
            None => match unit.strip_suffix('B') {
                Some(p) => (p, false),
                None => return Err(format!("`{s}`: the unit must end in B/s or bit/s")),
            },
        };
        let scale = match prefix {
            "" => 1.0,
            "k" | "K" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "Ki" => 1024.0,
            "Mi" => 1024.0 * 1024.0,
            "Gi" => 1024.0 * 1024.0 * 1024.0,
            other => return Err(format!("unknown prefix `{other}` in `{s}`")),
        };
        Ok(num * scale / if bits { 8.0 } else { 1.0 })
    }
    fn number(v: f64) -> Result<f64, String> {
        Err(format!("`{v}` has no unit; write {}", Self::EXPECTED))
    }
    fn check(v: f64) -> Result<f64, String> {
        if v > 0.0 && !v.is_nan() {
            Ok(v)
        } else {
            Err("a bandwidth of 0 would never deliver; write `unlimited` for no limit".into())
        }
    }
}

/// A plain number (sample counts, factors).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plain;

impl Unit for Plain {
    const EXPECTED: &'static str = "a number";
    fn schema() -> Schema {
        json_schema!({"type": "number"})
    }
    fn parse(s: &str) -> Result<f64, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number"))
    }
    fn number(v: f64) -> Result<f64, String> {
        Ok(v)
    }
    fn check(v: f64) -> Result<f64, String> {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("expected a finite number, found {v}"))
        }
    }
}

fn split_number(s: &str) -> Result<(f64, &str), String> {
    let t = s.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(t.len());
    let num: f64 = t[..end]
        .parse()
        .map_err(|_| format!("`{s}` does not start with a number"))?;
    if num < 0.0 || !num.is_finite() {
        return Err(format!("`{s}` must not be negative"));
    }
    Ok((num, t[end..].trim()))
}

/// One fixed quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Q<U> {
    /// The value in the unit's base unit.
    pub value: f64,
    unit: PhantomData<U>,
}

impl<U> Q<U> {
    /// A quantity of `value` base units.
    pub fn new(value: f64) -> Self {
        Q {
            value,
            unit: PhantomData,
        }
    }
}

struct QVisitor<U>(PhantomData<U>);

impl<U: Unit> Visitor<'_> for QVisitor<U> {
    type Value = Q<U>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(U::EXPECTED)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Q<U>, E> {
        U::parse(s)
            .and_then(U::check)
            .map(Q::new)
            .map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Q<U>, E> {
        U::number(v)
            .and_then(U::check)
            .map(Q::new)
            .map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Q<U>, E> {
        self.visit_f64(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Q<U>, E> {
        self.visit_f64(v as f64)
    }
}

/// The unit type's own name (`Duration` for `units::Duration`), for schema names.
fn unit_name<U>() -> &'static str {
    let full = std::any::type_name::<U>();
    full.rsplit("::").next().unwrap_or(full)
}

impl<'de, U: Unit> Deserialize<'de> for Q<U> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QVisitor(PhantomData))
    }
}

impl<U: Unit> JsonSchema for Q<U> {
    fn schema_name() -> Cow<'static, str> {
        Cow::Owned(format!("Quantity_{}", unit_name::<U>()))
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        U::schema()
    }
}

/// The written forms of a distribution.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields, bound = "U: Unit")]
enum DistForm<U: Unit> {
    Uniform {
        low: Q<U>,
        high: Q<U>,
    },
    Normal {
        mean: Q<U>,
        std: Q<U>,
    },
    /// exp(N(ln median, sigma)).
    Lognormal {
        median: Q<U>,
        sigma: f64,
    },
    Exponential {
        mean: Q<U>,
    },
}

/// A quantity that is fixed (`2ms`) or drawn (`{lognormal: {median: 2ms, sigma: 0.5}}`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistQ<U> {
    /// The distribution in base units.
    pub dist: Dist,
    unit: PhantomData<U>,
}

impl<U> DistQ<U> {
    /// Always `value` base units.
    pub fn fixed(value: f64) -> Self {
        DistQ {
            dist: Dist::Fixed(value),
            unit: PhantomData,
        }
    }
}

struct DistVisitor<U>(PhantomData<U>);

impl<'de, U: Unit> Visitor<'de> for DistVisitor<U> {
    type Value = DistQ<U>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, or a distribution such as {{uniform: {{low, high}}}}",
            U::EXPECTED
        )
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<DistQ<U>, E> {
        U::parse(s)
            .and_then(U::check)
            .map(DistQ::fixed)
            .map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<DistQ<U>, E> {
        U::number(v)
            .and_then(U::check)
            .map(DistQ::fixed)
            .map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<DistQ<U>, E> {
        self.visit_f64(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<DistQ<U>, E> {
        self.visit_f64(v as f64)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DistQ<U>, A::Error> {
        let form = DistForm::<U>::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let dist = match form {
            DistForm::Uniform { low, high } if high.value >= low.value => Dist::Uniform {
                low: low.value,
                high: high.value,
            },
            DistForm::Uniform { .. } => return Err(de::Error::custom("uniform needs low <= high")),
            DistForm::Normal { mean, std } if std.value >= 0.0 && std.value.is_finite() => {
                Dist::Normal {
                    mean: mean.value,
                    std: std.value,
                }
            }
            DistForm::Normal { .. } => {
                return Err(de::Error::custom("normal needs a finite std >= 0"))
            }
            DistForm::Lognormal { median, sigma }
                if median.value > 0.0 && (0.0..=MAX_SIGMA).contains(&sigma) =>
            {
                Dist::LogNormal {
                    mu: median.value.ln(),
                    sigma,
                }
            }
            DistForm::Lognormal { .. } => {
                return Err(de::Error::custom(format!(
                    "lognormal needs median > 0 and sigma from 0 to {MAX_SIGMA}"
                )))
            }
            DistForm::Exponential { mean } => Dist::Exponential { mean: mean.value },
        };
        Ok(DistQ {
            dist,
            unit: PhantomData,
        })
    }
}

impl<'de, U: Unit> Deserialize<'de> for DistQ<U> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DistVisitor(PhantomData))
    }
}

impl<U: Unit> JsonSchema for DistQ<U> {
    fn schema_name() -> Cow<'static, str> {
        Cow::Owned(format!("Dist_{}", unit_name::<U>()))
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let v = serde_json::Value::from(U::schema());
        let obj = |props: serde_json::Value, req: &[&str]| serde_json::json!({"type": "object", "additionalProperties": false, "properties": props, "required": req});
        json_schema!({
            "description": format!("{}, or a distribution to draw it from", U::EXPECTED),
            "anyOf": [
                v,
                obj(serde_json::json!({"uniform": obj(serde_json::json!({"low": v, "high": v}), &["low", "high"])}), &["uniform"]),
                obj(serde_json::json!({"normal": obj(serde_json::json!({"mean": v, "std": v}), &["mean", "std"])}), &["normal"]),
                obj(serde_json::json!({"lognormal": obj(serde_json::json!({"median": v, "sigma": {"type": "number", "minimum": 0}}), &["median", "sigma"])}), &["lognormal"]),
                obj(serde_json::json!({"exponential": obj(serde_json::json!({"mean": v}), &["mean"])}), &["exponential"])
            ]
        })
    }
}

/// Deserializes an externally tagged enum written the way people write YAML: `softmax` for a
/// unit variant and `{mlp: {hidden: 32}}` for one with data. (serde_norway on its own wants
/// YAML tags, `!mlp`, for the latter.) Use with `#[serde(deserialize_with = "...")]`.
pub(crate) fn map_enum<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a name, or a mapping with one key")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            T::deserialize(de::value::StrDeserializer::<E>::new(s))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates_parse() {
        assert_eq!(Time::parse("250ms"), Ok(250_000.0));
        assert_eq!(Time::parse("1.5s"), Ok(1_500_000.0));
        assert_eq!(Time::parse("5m"), Ok(300e6));
        assert_eq!(Time::parse(" 2h "), Ok(7200e6));
        assert!(Time::parse("5").unwrap_err().contains("no unit"));
        assert!(Time::parse("5 parsecs")
            .unwrap_err()
            .contains("unknown time unit"));
        assert_eq!(Rate::parse("20MB/s"), Ok(20e6));
        assert_eq!(Rate::parse("8Mbit/s"), Ok(1e6));
        assert_eq!(Rate::parse("1KiB/s"), Ok(1024.0));
        assert!(Rate::parse("20MB").is_err());
    }

    #[test]
    fn distributions_parse_from_yaml() {
        let d: DistQ<Time> = serde_yaml::from_str("{uniform: {low: 1ms, high: 3ms}}").unwrap();
        assert_eq!(
            d.dist,
            Dist::Uniform {
                low: 1000.0,
                high: 3000.0
            }
        );
        let d: DistQ<Time> = serde_yaml::from_str("2ms").unwrap();
        assert_eq!(d.dist, Dist::Fixed(2000.0));
        let d: DistQ<Plain> =
            serde_yaml::from_str("{lognormal: {median: 64, sigma: 0.5}}").unwrap();
        assert_eq!(
            d.dist,
            Dist::LogNormal {
                mu: 64f64.ln(),
                sigma: 0.5
            }
        );
        let e = serde_yaml::from_str::<DistQ<Time>>("{gaussian: {mean: 1s}}").unwrap_err();
        assert!(e.to_string().contains("unknown variant `gaussian`"), "{e}");
    }
}
