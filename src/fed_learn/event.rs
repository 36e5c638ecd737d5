//! The 15 event types of Clara's `fed_learn`, fired by the server and clients at each step of
//! the protocol and seen by every handler on the event bus.

use std::fmt;
use std::str::FromStr;

/// A protocol event. `as_str` gives the seed's exact string, which is also what the event log
/// writes, so a log line names the same event a Clara handler would receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    /// A client has registered and got a token (server side).
    ClientRegister,
    /// A client has quit the federation on purpose (server side).
    ClientQuit,
    /// A round starts (server side).
    StartRound,
    /// A client asked for the current model (server side).
    GetModel,
    /// The server sends the current model to a client.
    SendModel,
    /// A client has received the current model.
    ReceiveModel,
    /// The server accepted a client's contribution.
    ReceiveContribution,
    /// The server is about to aggregate the round's contributions.
    BeforeAggregation,
    /// The server has aggregated and holds the new global model.
    EndAggregation,
    /// The round is over.
    EndRound,
    /// A client submits its local best model for cross-site validation.
    SubmitLocalBestModel,
    /// The server sends the best models out for validation.
    SendBestModel,
    /// A client has received models to validate.
    ReceiveValidationModel,
    /// A client sends its validation results.
    SendValidationResults,
    /// The server has received a client's validation results.
    ReceiveValidationResults,
}

impl EventType {
    /// Every event type, in protocol order.
    pub const ALL: [EventType; 15] = [
        EventType::ClientRegister,
        EventType::ClientQuit,
        EventType::StartRound,
        EventType::GetModel,
        EventType::SendModel,
        EventType::ReceiveModel,
        EventType::ReceiveContribution,
        EventType::BeforeAggregation,
        EventType::EndAggregation,
        EventType::EndRound,
        EventType::SubmitLocalBestModel,
        EventType::SendBestModel,
        EventType::ReceiveValidationModel,
        EventType::SendValidationResults,
        EventType::ReceiveValidationResults,
    ];

    /// The seed's string for this event, as handlers and the event log see it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ClientRegister => "_clientRegister",
            EventType::ClientQuit => "_clientQuit",
            EventType::StartRound => "_startRound",
            EventType::GetModel => "_getModel",
            EventType::SendModel => "_sendModel",
            EventType::ReceiveModel => "_receiveModel",
            EventType::ReceiveContribution => "_receiveContribution",
            EventType::BeforeAggregation => "_beforeAggregation",
            EventType::EndAggregation => "_endAggregation",
            EventType::EndRound => "_endRound",
            EventType::SubmitLocalBestModel => "_submitLocalBestModel",
            EventType::SendBestModel => "_sendBestModel",
            EventType::ReceiveValidationModel => "_receiveValidationModel",
            EventType::SendValidationResults => "_sendValidationResults",
            EventType::ReceiveValidationResults => "_receiveValidationResults",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string was not one of the 15 event names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEventType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifteen_seed_strings_verbatim() {
        let names: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            names,
            [
                "_clientRegister",
                "_clientQuit",
                "_startRound",
                "_getModel",
                "_sendModel",
                "_receiveModel",
                "_receiveContribution",
                "_beforeAggregation",
                "_endAggregation",
                "_endRound",
                "_submitLocalBestModel",
                "_sendBestModel",
                "_receiveValidationModel",
                "_sendValidationResults",
                "_receiveValidationResults",
            ]
        );
    }

    #[test]
    fn from_str_inverts_as_str() {
        for e in EventType::ALL {
            assert_eq!(e.as_str().parse::<EventType>(), Ok(e));
        }
        assert_eq!(
            "startRound".parse::<EventType>(),
            Err(UnknownEventType("startRound".into()))
        );
    }
}
