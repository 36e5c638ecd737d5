//! Clara's cross-site validation, after the last round: every client submits its local best
//! model, the server sends all of them (and the global model) to every client, and each client
//! reports its accuracy on each; the result is a client × model matrix.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::registry::Task;
use super::{Phase, Server};
use crate::fed_learn::contribution::names;
use crate::fed_learn::pb::{self, ModelData};
use crate::fed_learn::{EventType, MessageId, Text};
use crate::learn::Params;
use crate::sim::events::client_name;
use crate::sim::port::{Method, Timer};
use crate::sim::server::CrossSiteMatrix;
use crate::sim::wire::{self, types};

/// The state of cross-site validation: step 0 collects best models, step 1 results.
pub(super) struct CrossSite {
    pub(super) step: u8,
    pub(super) expected: BTreeSet<u32>,
    pub(super) best: BTreeMap<u32, Params>,
    pub(super) results: BTreeMap<u32, BTreeMap<String, f64>>,
    pub(super) task: Bytes,
}

impl Server {
    pub(super) fn after_training(&mut self) {
        if !self.cfg.cross_site_validation {
            return self.finish("completed");
        }
        let meta = self.meta(self.next_round);
        let task = self.encode_task(meta, names::SUBMIT_BEST_MODEL, ModelData::default(), false);
        let expected: BTreeSet<u32> = self.clients.keys().copied().collect();
        self.phase = Phase::CrossSite(CrossSite {
            step: 0,
            expected,
            best: BTreeMap::new(),
            results: BTreeMap::new(),
            task,
        });
        self.port
            .timer(self.cfg.round_timeout, Timer::CrossSiteTimeout(0));
        self.serve_parked_cross_site();
    }

    fn serve_parked_cross_site(&mut self) {
        let Phase::CrossSite(x) = &self.phase else {
            return;
        };
        let parked: Vec<(u32, Text)> = x
            .expected
            .clone()
            .into_iter()
            .filter_map(|c| {
                self.clients
                    .get_mut(&c)
                    .and_then(|r| r.parked.take().map(|(p, _)| (c, p)))
            })
            .collect();
        for (c, req) in parked {
            self.serve_cross_site(c, &req);
        }
    }

    pub(super) fn serve_cross_site(&mut self, client: u32, req: &Text) {
        let Phase::CrossSite(x) = &self.phase else {
            return;
        };
        let (step, task, models) = (x.step, x.task.clone(), x.best.len() + 1);
        if let Some(r) = self.clients.get_mut(&client) {
            r.served = Some((Task::CrossSite(step), MessageId::copy_of(req)));
        }
        if step == 1 {
            self.port.emit(
                None,
                EventType::SendBestModel,
                Some(client),
                vec![("models", models.into())],
            );
        }
        let frame = wire::reply_frame(&mut self.ids, req, types::TASK, &task[..]);
        self.send_frame(client, Method::Task, frame);
    }

    pub(super) fn on_cross_site_submit(&mut self, client: u32, c: pb::Contribution) {
        let step = match &self.phase {
            Phase::CrossSite(x) => x.step,
            _ => return,
        };
        if c.r#type == names::BEST_MODEL && step == 0 {
            if let Ok(p) = self.decoder.params(c.data) {
                if let Phase::CrossSite(x) = &mut self.phase {
                    x.best.insert(client, p);
                }
            }
        } else if c.r#type == names::VALIDATION && step == 1 {
            let detail = vec![("models", c.metrics.len().into())];
            self.port.emit(
                None,
                EventType::ReceiveValidationResults,
                Some(client),
                detail,
            );
            if let Phase::CrossSite(x) = &mut self.phase {
                x.results.insert(client, c.metrics.into_iter().collect());
            }
        }
        self.check_cross_site();
    }

    pub(super) fn check_cross_site(&mut self) {
        let Phase::CrossSite(x) = &self.phase else {
            return;
        };
        let live = x.expected.iter().filter(|c| self.clients.contains_key(c));
        let done = match x.step {
            0 => live.clone().all(|c| x.best.contains_key(c)),
            _ => live.clone().all(|c| x.results.contains_key(c)),
        };
        if done {
            self.cross_site_timeout(x.step);
        }
    }

    pub(super) fn cross_site_timeout(&mut self, step: u8) {
        let Phase::CrossSite(x) = &mut self.phase else {
            return;
        };
        if x.step != step {
            return;
        }
        if step == 0 {
            let mut md = ModelData::default();
            for (c, p) in &x.best {
                for (k, v) in p.to_model_data().params {
                    md.params.insert(format!("{}/{k}", client_name(*c)), v);
                }
            }
            for (k, v) in &self.global_md.params {
                md.params.insert(format!("server/{k}"), v.clone());
            }
            x.step = 1;
            x.expected = self.clients.keys().copied().collect();
            let meta = self.meta(self.next_round);
            let task = self.encode_task(meta, names::VALIDATE, md, false);
            if let Phase::CrossSite(x) = &mut self.phase {
                x.task = task;
            }
            self.port
                .timer(self.cfg.round_timeout, Timer::CrossSiteTimeout(1));
            return self.serve_parked_cross_site();
        }
        self.cross_site = Some(matrix(x));
        self.finish("completed");
    }
}

fn matrix(x: &CrossSite) -> CrossSiteMatrix {
    let mut models: Vec<String> = x.best.keys().map(|c| client_name(*c)).collect();
    models.push("server".into());
    let clients: Vec<String> = x.results.keys().map(|c| client_name(*c)).collect();
    let accuracy = x
        .results
        .values()
        .map(|row| models.iter().map(|m| row.get(m).copied()).collect())
        .collect();
    CrossSiteMatrix {
        models,
        clients,
        accuracy,
    }
}
