//! The plant's downtime reason codes (ADR 0053): the built-in catalogue as the plant
//! has amended it.
//!
//! Stream type `reason_catalogue`, one stream ([`PLANT_STREAM`]). A supervisor may
//! - define a code: add a new `group.leaf`, or rename or re-categorise an existing one
//!   ([`ReasonCodeEvent::ReasonCodeDefined`]);
//! - retire a code: it may no longer be given to a stop, and it stays listed, marked
//!   retired, so that history names it ([`ReasonCodeEvent::ReasonCodeRetired`]). Defining
//!   it again brings it back.
//!
//! A machine's state and classification events record the category, loss and planned flag
//! of their code as decided, so a change here only affects what comes after it: the KPIs of
//! past windows stay as they were computed.
//!
//! Rules: a code is `group.leaf` in lower case (letters, digits, `_`); `unclassified` and the
//! `scrap` group (scrap reasons, ADR 0050) are not downtime codes; a planned code has no
//! loss and an unplanned one names its big loss.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::reason::UNCLASSIFIED;
use crate::reason::{Loss, ReasonCatalogue, ReasonCategory, ReasonDefinition, SCRAP_GROUP};
use crate::values::{Actor, ReasonCode, Text};
use crate::Decide;

/// The id of the one reason-catalogue stream.
pub const PLANT_STREAM: &str = "plant";

/// Adds or changes a code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefineReasonCode {
    pub code: ReasonCode,
    pub name: Text,
    pub category: ReasonCategory,
    pub loss: Option<Loss>,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Takes a code out of use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetireReasonCode {
    pub code: ReasonCode,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Every command the reason catalogue accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReasonCodeCommand {
    DefineReasonCode(DefineReasonCode),
    RetireReasonCode(RetireReasonCode),
}

/// What happened to the plant's reason codes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum ReasonCodeEvent {
    ReasonCodeDefined {
        code: ReasonCode,
        name: Text,
        category: ReasonCategory,
        loss: Option<Loss>,
        by: Actor,
        at: DateTime<Utc>,
    },
    ReasonCodeRetired {
        code: ReasonCode,
        by: Actor,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ReasonCodeEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ReasonCodeDefined { .. } => "ReasonCodeDefined",
            Self::ReasonCodeRetired { .. } => "ReasonCodeRetired",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        String::from("1")
    }
}

/// Why a change to the catalogue was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReasonCodeError {
    #[error("`{UNCLASSIFIED}` is not a code a plant may define or retire")]
    Unclassified,
    #[error("reason code {code} must be `group.leaf` in lower case (letters, digits, `_`)")]
    Shape { code: ReasonCode },
    #[error("the `{SCRAP_GROUP}` group holds scrap reasons, not downtime codes")]
    ScrapGroup,
    #[error("a planned code counts against no loss; leave `loss` out")]
    PlannedWithLoss,
    #[error("an unplanned code must name the big loss it counts against")]
    UnplannedWithoutLoss,
    #[error("reason code {code} does not exist")]
    NotFound { code: ReasonCode },
}

/// One code as the plant sees it: its definition, whether it is one of the built-in
/// codes, and whether it is retired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedReason {
    pub definition: ReasonDefinition,
    pub builtin: bool,
    pub retired: bool,
}

/// The plant's amendments to the built-in catalogue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlantReasons {
    /// Codes the plant defined (new ones, and built-in ones it changed).
    defined: BTreeMap<ReasonCode, ReasonDefinition>,
    retired: BTreeSet<ReasonCode>,
}

impl PlantReasons {
    /// The catalogue in force: built-in and defined codes, without the retired ones.
    pub fn catalogue(&self) -> ReasonCatalogue {
        let builtin = ReasonCatalogue::builtin().reasons().iter();
        let merged = builtin
            .filter(|r| !self.defined.contains_key(&r.code))
            .chain(self.defined.values())
            .filter(|r| !self.retired.contains(&r.code))
            .cloned();
        ReasonCatalogue::new(merged.collect::<Vec<_>>())
    }

    /// Every code ever known, retired ones included, sorted by code.
    pub fn listing(&self) -> Vec<ListedReason> {
        let builtin = ReasonCatalogue::builtin();
        let mut all: BTreeMap<&ReasonCode, &ReasonDefinition> =
            builtin.reasons().iter().map(|r| (&r.code, r)).collect();
        all.extend(self.defined.iter());
        all.into_values()
            .map(|definition| ListedReason {
                definition: definition.clone(),
                builtin: builtin.get(definition.code.as_str()).is_some(),
                retired: self.retired.contains(&definition.code),
            })
            .collect()
    }

    fn current(&self, code: &ReasonCode) -> Option<ReasonDefinition> {
        match self.defined.get(code) {
            Some(d) => Some(d.clone()),
            None => ReasonCatalogue::builtin()
                .reasons()
                .iter()
                .find(|r| r.code == *code)
                .cloned(),
        }
    }
}

/// Whether `code` is `group.leaf`: lower-case ASCII letters, digits and `_`, one dot.
fn well_formed(code: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    matches!(code.split_once('.'), Some((group, leaf)) if part(group) && part(leaf))
}

fn check_code(code: &ReasonCode) -> Result<(), ReasonCodeError> {
    if code.as_str() == UNCLASSIFIED {
        return Err(ReasonCodeError::Unclassified);
    }
    if !well_formed(code.as_str()) {
        return Err(ReasonCodeError::Shape { code: code.clone() });
    }
    if code.as_str().split('.').next() == Some(SCRAP_GROUP) {
        return Err(ReasonCodeError::ScrapGroup);
    }
    Ok(())
}

impl Decide for PlantReasons {
    fn decide(&self, command: ReasonCodeCommand) -> Result<Vec<ReasonCodeEvent>, ReasonCodeError> {
        match command {
            ReasonCodeCommand::DefineReasonCode(cmd) => {
                check_code(&cmd.code)?;
                match (cmd.category, cmd.loss) {
                    (ReasonCategory::Planned, Some(_)) => {
                        return Err(ReasonCodeError::PlannedWithLoss)
                    }
                    (ReasonCategory::Unplanned, None) => {
                        return Err(ReasonCodeError::UnplannedWithoutLoss)
                    }
                    _ => {}
                }
                let wanted = ReasonDefinition {
                    code: cmd.code.clone(),
                    name: cmd.name.as_str().to_owned(),
                    category: cmd.category,
                    loss: cmd.loss,
                };
                if !self.retired.contains(&cmd.code) && self.current(&cmd.code) == Some(wanted) {
                    return Ok(vec![]);
                }
                Ok(vec![ReasonCodeEvent::ReasonCodeDefined {
                    code: cmd.code,
                    name: cmd.name,
                    category: cmd.category,
                    loss: cmd.loss,
                    by: cmd.by,
                    at: cmd.at,
                }])
            }
            ReasonCodeCommand::RetireReasonCode(cmd) => {
                check_code(&cmd.code)?;
                if self.current(&cmd.code).is_none() {
                    return Err(ReasonCodeError::NotFound { code: cmd.code });
                }
                if self.retired.contains(&cmd.code) {
                    return Ok(vec![]);
                }
                Ok(vec![ReasonCodeEvent::ReasonCodeRetired {
                    code: cmd.code,
                    by: cmd.by,
                    at: cmd.at,
                }])
            }
        }
    }
}

impl Aggregate for PlantReasons {
    const TYPE: &'static str = crate::StreamType::ReasonCatalogue.as_str();
    type Command = ReasonCodeCommand;
    type Event = ReasonCodeEvent;
    type Error = ReasonCodeError;
    type Services = ();

    crate::handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            ReasonCodeEvent::ReasonCodeDefined {
                code,
                name,
                category,
                loss,
                ..
            } => {
                self.retired.remove(&code);
                let definition = ReasonDefinition {
                    code: code.clone(),
                    name: name.as_str().to_owned(),
                    category,
                    loss,
                };
                self.defined.insert(code, definition);
            }
            ReasonCodeEvent::ReasonCodeRetired { code, .. } => {
                self.retired.insert(code);
            }
        }
    }
}
