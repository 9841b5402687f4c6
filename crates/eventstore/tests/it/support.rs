//! A small aggregate for tests: a tally whose state keeps every amount it
//! applied, so an event applied twice shows.

use std::collections::HashMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use shopfloor_eventstore::{EventMetadata, NewEvent, Source};
use uuid::Uuid;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub id: Option<String>,
    pub total: i64,
    pub history: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum TallyEvent {
    TallyOpened { id: String },
    TallyAdded { amount: i64 },
}

impl DomainEvent for TallyEvent {
    fn event_type(&self) -> String {
        match self {
            TallyEvent::TallyOpened { .. } => "TallyOpened",
            TallyEvent::TallyAdded { .. } => "TallyAdded",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug)]
pub enum TallyCommand {
    Open { id: String },
    Add { amount: i64 },
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum TallyError {
    #[error("the tally is already open")]
    AlreadyOpen,
    #[error("the tally is not open")]
    NotOpen,
}

impl Tally {
    fn decide(&self, command: TallyCommand) -> Result<Vec<TallyEvent>, TallyError> {
        match (command, &self.id) {
            (TallyCommand::Open { .. }, Some(_)) => Err(TallyError::AlreadyOpen),
            (TallyCommand::Open { id }, None) => Ok(vec![TallyEvent::TallyOpened { id }]),
            (TallyCommand::Add { .. }, None) => Err(TallyError::NotOpen),
            (TallyCommand::Add { amount }, Some(_)) => Ok(vec![TallyEvent::TallyAdded { amount }]),
        }
    }
}

impl Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Command = TallyCommand;
    type Event = TallyEvent;
    type Error = TallyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: TallyCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), TallyError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: TallyEvent) {
        match event {
            TallyEvent::TallyOpened { id } => self.id = Some(id),
            TallyEvent::TallyAdded { amount } => {
                self.total += amount;
                self.history.push(amount);
            }
        }
    }
}

/// A raw event with a fresh id.
pub fn event(event_type: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_string(),
        schema_version: 1,
        payload,
        metadata: EventMetadata {
            actor: Some("tester".into()),
            source: Source::System,
            ..Default::default()
        },
    }
}

pub fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
