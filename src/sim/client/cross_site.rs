//! A client's side of Clara's cross-site validation: hand in its best model, then score
//! every model the server sends on its own held-out data.

use std::collections::BTreeMap;

use super::Client;
use crate::fed_learn::contribution::names;
use crate::fed_learn::pb::{self, ModelData};
use crate::fed_learn::{EventType, ModelTransformer, Proto};
use crate::learn::Params;
use crate::sim::port::Method;
use crate::sim::wire::{self, types};

impl Client {
    pub(super) fn on_submit_best(&mut self, task: pb::CurrentTask) {
        self.emit(None, EventType::SubmitLocalBestModel, vec![]);
        let best = self
            .best
            .clone()
            .unwrap_or_else(|| self.common.template.clone());
        let Ok(encoded) = self.chain.encode(best.to_model_data()) else {
            return;
        };
        let c = pb::Contribution {
            client: Some(self.state_msg()),
            n_iter: 0,
            r#type: names::BEST_MODEL.into(),
            meta_data: task.meta_data,
            data: Some(encoded),
            task_name: names::SUBMIT_BEST_MODEL.into(),
            metrics: Default::default(),
        };
        self.hand_in(&c);
        self.ask_for_task();
    }

    pub(super) fn on_validate(&mut self, task: pb::CurrentTask) {
        let Some(md) = self.decode(task.data) else {
            return;
        };
        let mut models: BTreeMap<String, Vec<(String, ndarray::ArrayD<f32>)>> = BTreeMap::new();
        for (name, nd) in &md.params {
            let Some((owner, param)) = name.split_once('/') else {
                continue;
            };
            let Ok(a) = crate::fed_learn::proto_to_ndarray::<f32>(nd) else {
                continue;
            };
            models
                .entry(owner.to_string())
                .or_default()
                .push((param.to_string(), a));
        }
        self.emit(
            None,
            EventType::ReceiveValidationModel,
            vec![("models", models.len().into())],
        );
        let data = self.data();
        let set = if data.test.is_empty() {
            &data.train
        } else {
            &data.test
        };
        let metrics: std::collections::BTreeMap<String, f64> = models
            .into_iter()
            .filter(|(_, p)| p.len() == self.common.template.0.len())
            .map(|(owner, p)| (owner, self.common.model.evaluate(&Params(p), set).accuracy))
            .collect();
        self.emit(
            None,
            EventType::SendValidationResults,
            vec![("models", metrics.len().into())],
        );
        let c = pb::Contribution {
            client: Some(self.state_msg()),
            n_iter: 0,
            r#type: names::VALIDATION.into(),
            meta_data: task.meta_data,
            data: None,
            task_name: names::VALIDATE.into(),
            metrics: metrics.into_iter().collect(),
        };
        self.hand_in(&c);
    }

    /// Sends a cross-site contribution as a call, sent again if it goes unanswered.
    fn hand_in(&mut self, c: &pb::Contribution) {
        let id = self.ids.draw();
        let frame = wire::request_frame(id, Method::SubmitUpdate, types::CONTRIBUTION, Proto(c));
        self.submit(id, frame);
    }

    fn decode(&mut self, md: Option<ModelData>) -> Option<ModelData> {
        match self.chain.decode(md.unwrap_or_default()) {
            Ok(md) => Some(md),
            Err(err) => {
                self.corrupted(None, err.to_string());
                None
            }
        }
    }
}
