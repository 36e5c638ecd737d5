//! `ApplicationContext` and `FLContext`: the data that travels with the protocol's steps.
//!
//! Clara hands every component and event handler an `FLContext` carrying typed properties,
//! the round's meta data and the current model; the `ApplicationContext` holds what is fixed
//! for a whole run. Both clone deeply in effect: the model is shared behind an `Arc` and is
//! copied on write ([`FLContext::model_mut`]), so a clone never sees another's changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::pb::{MetaData, ModelData};

/// A typed property value.
#[derive(Debug, Clone, PartialEq)]
pub enum Prop {
    /// A flag.
    Bool(bool),
    /// An integer (counts, ids, rounds).
    Int(i64),
    /// A real number (metrics).
    Float(f64),
    /// Text (names, reasons).
    Text(String),
    /// Raw bytes.
    Bytes(Bytes),
}

/// Typed properties in name order, so iteration is deterministic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Props(BTreeMap<String, Prop>);

impl Props {
    /// Sets `key`, returning the value it replaced.
    pub fn set(&mut self, key: impl Into<String>, value: Prop) -> Option<Prop> {
        self.0.insert(key.into(), value)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Prop> {
        self.0.get(key)
    }

    /// The integer value of `key`, if it is set and is an integer.
    pub fn get_int(&self, key: &str) -> Option<i64> {
        match self.0.get(key) {
            Some(Prop::Int(v)) => Some(*v),
            _ => None,
        }
    }

    /// The real value of `key`, if it is set and is a real number.
    pub fn get_float(&self, key: &str) -> Option<f64> {
        match self.0.get(key) {
            Some(Prop::Float(v)) => Some(*v),
            _ => None,
        }
    }

    /// The text value of `key`, if it is set and is text.
    pub fn get_text(&self, key: &str) -> Option<&str> {
        match self.0.get(key) {
            Some(Prop::Text(v)) => Some(v),
            _ => None,
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Prop> {
        self.0.remove(key)
    }

    /// All properties in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Prop)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// What is fixed for a whole run: Clara's `ApplicationContext`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplicationContext {
    /// The name of the actor this context belongs to: `"server"` or `"client-0007"`.
    pub name: String,
    /// The run number, as `MetaData.run_number`.
    pub run_number: i32,
    /// Run-wide properties (configuration values, for example).
    pub props: Props,
}

/// The context of one protocol step, handed to event handlers: Clara's `FLContext`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FLContext {
    /// The run-wide context, shared.
    pub app: Arc<ApplicationContext>,
    /// Properties of this step (round, client, reason, ...).
    pub props: Props,
    meta: Option<MetaData>,
    model: Option<Arc<ModelData>>,
}

impl FLContext {
    /// An empty context within the given application context.
    pub fn new(app: Arc<ApplicationContext>) -> Self {
        FLContext {
            app,
            ..FLContext::default()
        }
    }

    /// The round's meta data, if set.
    pub fn meta(&self) -> Option<&MetaData> {
        self.meta.as_ref()
    }

    /// Sets the round's meta data.
    pub fn set_meta(&mut self, meta: MetaData) {
        self.meta = Some(meta);
    }

    /// The current model, if set.
    pub fn model(&self) -> Option<&ModelData> {
        self.model.as_deref()
    }

    /// Sets the current model; an `Arc` lets many contexts share one model without copying.
    pub fn set_model(&mut self, model: Arc<ModelData>) {
        self.model = Some(model);
    }

    /// The current model for changing. It is copied first if another context shares it.
    pub fn model_mut(&mut self) -> Option<&mut ModelData> {
        self.model.as_mut().map(Arc::make_mut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fed_learn::pb::NDArray;

    #[test]
    fn clone_is_independent() {
        let mut ctx = FLContext::default();
        ctx.props.set("round", Prop::Int(3));
        ctx.set_model(Arc::new(ModelData::default()));
        ctx.set_meta(MetaData {
            current_round: 3,
            ..Default::default()
        });
        let mut copy = ctx.clone();
        copy.props.set("round", Prop::Int(4));
        copy.model_mut()
            .unwrap()
            .params
            .insert("w".into(), NDArray::default());
        assert_eq!(ctx.props.get_int("round"), Some(3));
        assert!(ctx.model().unwrap().params.is_empty());
        assert_eq!(copy.model().unwrap().params.len(), 1);
        assert_eq!(copy.meta().unwrap().current_round, 3);
    }

    #[test]
    fn typed_getters_check_the_type() {
        let mut p = Props::default();
        p.set("x", Prop::Text("a".into()));
        assert_eq!(p.get_text("x"), Some("a"));
        assert_eq!(p.get_int("x"), None);
        assert_eq!(p.get_float("missing"), None);
    }
}
