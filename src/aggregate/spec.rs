//! A strategy's settings as a type, and the one list that registers every strategy.
//!
//! [`AggregatorSpec`] is generated from the list in `aggregate/mod.rs`: its YAML form, its
//! JSON Schema, its checks and its construction all come from each strategy's [`Strategy`]
//! type, so nothing about a strategy is written twice.

use std::fmt::Debug;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::{Aggregator, AggregatorSpec};

/// The settings of one strategy, as a scenario writes them under its name.
///
/// `Default` gives the settings of the bare name (`aggregator: fedavgm`). Deserializing must
/// refuse unknown keys (`#[serde(deny_unknown_fields)]`), so that a misspelt setting is an
/// error rather than a default.
pub trait Strategy: Default + Clone + Debug + PartialEq + DeserializeOwned + JsonSchema {
    /// The name a scenario writes, for example `"fedavgm"`.
    const NAME: &'static str;

    /// Settings out of range, each as (setting, what is wrong with it).
    fn problems(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// A fresh aggregator with these settings.
    fn build(&self) -> Box<dyn Aggregator>;
}

/// Generates [`AggregatorSpec`] from a list of `Variant(SettingsType)`.
macro_rules! strategies {
    ($($variant:ident($settings:ty)),+ $(,)?) => {
        /// Which strategy the server runs, with its settings.
        #[derive(Debug, Clone, PartialEq)]
        pub enum AggregatorSpec {
            $(
                #[doc = concat!("`", stringify!($variant), "`, with its settings.")]
                $variant($settings),
            )+
        }

        impl AggregatorSpec {
            /// Every registered strategy's name, in the list's order.
            pub const NAMES: &'static [&'static str] = &[$(<$settings as Strategy>::NAME),+];

            /// The strategy called `name`, with its default settings.
            pub fn named(name: &str) -> Option<Self> {
                $(if name == <$settings as Strategy>::NAME {
                    return Some(AggregatorSpec::$variant(Default::default()));
                })+
                None
            }

            /// The strategy's name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(AggregatorSpec::$variant(_) => <$settings as Strategy>::NAME,)+
                }
            }

            /// Settings out of range, each as (setting, what is wrong with it).
            pub fn problems(&self) -> Vec<(&'static str, String)> {
                match self {
                    $(AggregatorSpec::$variant(s) => s.problems(),)+
                }
            }

            /// A fresh aggregator.
            pub fn build(&self) -> Box<dyn Aggregator> {
                match self {
                    $(AggregatorSpec::$variant(s) => s.build(),)+
                }
            }

            fn settings_from<'de, A: serde::de::MapAccess<'de>>(
                name: &str,
                map: &mut A,
            ) -> Result<Self, A::Error> {
                $(if name == <$settings as Strategy>::NAME {
                    return map.next_value::<$settings>().map(AggregatorSpec::$variant);
                })+
                Err(serde::de::Error::unknown_variant(name, Self::NAMES))
            }

            fn schemas(g: &mut schemars::SchemaGenerator) -> Vec<serde_json::Value> {
                vec![$(
                    serde_json::json!({
                        "type": "object",
                        "additionalProperties": false,
                        "required": [<$settings as Strategy>::NAME],
                        "properties": {
                            <$settings as Strategy>::NAME: g.subschema_for::<$settings>(),
                        },
                    }),
                )+]
            }
        }
    };
}
pub(super) use strategies;

impl Default for AggregatorSpec {
    /// FedAvg, as Clara's default.
    fn default() -> Self {
        AggregatorSpec::named("fedavg").expect("fedavg is registered")
    }
}

impl<'de> serde::Deserialize<'de> for AggregatorSpec {
    /// A bare name (`fedavgm`) for the default settings, or a mapping of one name to its
    /// settings (`{fedavgm: {momentum: 0.5}}`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AggregatorSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    "a strategy name ({}), or a mapping of one name to its settings",
                    AggregatorSpec::NAMES.join(", ")
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<AggregatorSpec, E> {
                AggregatorSpec::named(s).ok_or_else(|| E::unknown_variant(s, AggregatorSpec::NAMES))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AggregatorSpec, A::Error> {
                let Some(name) = map.next_key::<String>()? else {
                    return Err(de::Error::invalid_length(0, &self));
                };
                let spec = AggregatorSpec::settings_from(&name, &mut map)?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "expected one strategy: a mapping with one key",
                    ));
                }
                Ok(spec)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for AggregatorSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AggregatorSpec".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut any_of = vec![serde_json::json!({"enum": AggregatorSpec::NAMES})];
        any_of.extend(AggregatorSpec::schemas(g));
        schemars::json_schema!({
            "description": "The aggregation strategy: a name, or a mapping of one name to its settings.",
            "anyOf": any_of,
        })
    }
}
