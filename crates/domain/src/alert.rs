//! Alert rules and alerts: who is told about a problem, and the alert's life.
//!
//! Two aggregates, so that every change is an event on the log and an auditor can replay who
//! changed a rule and who knew what, when:
//! - [`AlertRule`] (stream type `alert_rule`, one stream per [`AlertRuleId`]): defined with a
//!   kind, a scope (plant, line or machine), a threshold in minutes of floor time, a severity,
//!   its channels and an optional escalation; redefined while enabled; disabled for good.
//! - [`Alert`] (stream type `alert`, one stream per [`AlertId`]): raised → acknowledged (by whom)
//!   → resolved (by the condition clearing, or by hand); escalated while no one acknowledges.
//!
//! The alert id is derived by the evaluator from the rule and the triggering event, so a second
//! `RaiseAlert` for the same pair finds the stream raised and emits nothing: a restart that
//! evaluates the same event again raises nothing twice. Acknowledging an acknowledged alert,
//! escalating past the next level and resolving a resolved alert also emit nothing (retries are
//! no-ops); acknowledging a resolved alert is refused.
//!
//! A webhook channel's secret is part of the rule's event (the contract's body carries it); its
//! `Debug` is redacted, and the API redacts it from every answer (ADR 0039).

use std::fmt;

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::values::{Actor, AlertId, AlertRuleId, ItemId, LineId, MachineId, Text};
use crate::Decide;

/// The longest threshold or escalation delay accepted: four weeks, in minutes.
pub const MAX_AFTER_MINUTES: f64 = 40_320.0;
/// Most channels per rule (or per escalation step).
pub const MAX_CHANNELS: usize = 16;

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A machine `down` (unplanned) for `after_minutes` of floor time.
    MachineDown,
    /// A stop (`down` or `idle`) with no reason code for `after_minutes` of floor time.
    UnclassifiedStop,
    /// A predictive-maintenance task was scheduled (an anomaly was detected).
    PredictiveAlert,
    /// A backflush found less stock than an order consumed.
    InventoryShortage,
    /// A maintenance task still open `after_minutes` past its scheduled date.
    MaintenanceOverdue,
    /// An item's stock (all locations) below the rule's `target` (its reorder point).
    BelowReorderPoint,
    /// No message through the ingest (MQTT, Sparkplug, OPC UA) from a machine that has sent
    /// before, for `after_minutes`.
    IngestSilent,
    /// At least `target` ingest messages rejected within the last `after_minutes`.
    RejectedMessages,
    /// A KPI (`metric`) of the scope below `target` over the running shift (the plant-local
    /// day where the line has no calendar), once `after_minutes` of it have passed.
    KpiBelowTarget,
    /// A run rule signalled on an SPC characteristic's chart (ADR 0056): one alert per
    /// signal, scoped by the characteristic's machine.
    SpcSignal,
}

impl AlertKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MachineDown => "machine_down",
            Self::UnclassifiedStop => "unclassified_stop",
            Self::PredictiveAlert => "predictive_alert",
            Self::InventoryShortage => "inventory_shortage",
            Self::MaintenanceOverdue => "maintenance_overdue",
            Self::BelowReorderPoint => "below_reorder_point",
            Self::IngestSilent => "ingest_silent",
            Self::RejectedMessages => "rejected_messages",
            Self::KpiBelowTarget => "kpi_below_target",
            Self::SpcSignal => "spc_signal",
        }
    }

    /// Whether the evaluator checks the rule as a condition on its timer: an alert while
    /// the condition holds, resolved when it no longer does.
    pub const fn is_condition(self) -> bool {
        matches!(
            self,
            Self::MaintenanceOverdue
                | Self::BelowReorderPoint
                | Self::IngestSilent
                | Self::RejectedMessages
                | Self::KpiBelowTarget
        )
    }

    /// Whether the rule waits `after_minutes` of floor time ("longer than" rules).
    pub const fn is_timed(self) -> bool {
        matches!(self, Self::MachineDown | Self::UnclassifiedStop)
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The KPI a `kpi_below_target` rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KpiMetric {
    Oee,
    Availability,
    Performance,
    Quality,
}

impl KpiMetric {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Oee => "oee",
            Self::Availability => "availability",
            Self::Performance => "performance",
            Self::Quality => "quality",
        }
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    #[default]
    Critical,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// Where an alert is delivered.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Channel {
    /// A signed JSON `POST` (`X-Shopfloor-Signature: sha256=<hex HMAC-SHA256 of the body>`).
    Webhook { url: String, secret: String },
    /// An email to each address, over the plant's SMTP server.
    Email { to: Vec<String> },
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Webhook { url, .. } => f
                .debug_struct("Webhook")
                .field("url", url)
                .field("secret", &"[redacted]")
                .finish(),
            Self::Email { to } => f.debug_struct("Email").field("to", to).finish(),
        }
    }
}

impl Channel {
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Email { .. } => "email",
        }
    }

    fn validate(&self) -> Result<(), AlertRuleError> {
        let bad = |m: &str| Err(AlertRuleError::Invalid(m.to_string()));
        match self {
            Self::Webhook { url, secret } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048
                {
                    return bad("a webhook url must be http:// or https://");
                }
                if secret.is_empty() || secret.len() > 512 {
                    return bad("a webhook secret must have 1 to 512 characters");
                }
            }
            Self::Email { to } => {
                if to.is_empty() || to.len() > 64 {
                    return bad("an email channel needs 1 to 64 addresses");
                }
                if to
                    .iter()
                    .any(|a| !a.contains('@') || a.len() > 254 || a.chars().any(char::is_control))
                {
                    return bad("an email address is not valid");
                }
            }
        }
        Ok(())
    }
}

/// Who is told next when no one acknowledges in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    /// Minutes after the alert is raised.
    pub after_minutes: f64,
    pub channels: Vec<Channel>,
}

/// The definition of a rule (the command, and the event's body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub kind: AlertKind,
    /// Scope: one machine, one line, or (neither) the whole plant.
    pub machine_id: Option<MachineId>,
    pub line: Option<LineId>,
    /// Minutes of floor time the condition must last (timed kinds; 0 otherwise).
    pub after_minutes: f64,
    pub severity: Severity,
    pub channels: Vec<Channel>,
    pub escalation: Option<Escalation>,
    /// The threshold of `below_reorder_point` (a quantity), `rejected_messages` (a count)
    /// and `kpi_below_target` (a fraction, 0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// The item of `below_reorder_point`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<ItemId>,
    /// The KPI of `kpi_below_target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<KpiMetric>,
}

fn check_minutes(m: f64, what: &str) -> Result<(), AlertRuleError> {
    if m.is_finite() && m > 0.0 && m <= MAX_AFTER_MINUTES {
        Ok(())
    } else {
        Err(AlertRuleError::Invalid(format!(
            "{what} must be a number above 0 and at most {MAX_AFTER_MINUTES}"
        )))
    }
}

impl RuleSpec {
    /// Checks the business rules of a definition.
    pub fn validate(&self) -> Result<(), AlertRuleError> {
        let invalid = |m: &str| Err(AlertRuleError::Invalid(m.to_string()));
        let needs_minutes = self.kind.is_timed()
            || matches!(
                self.kind,
                AlertKind::IngestSilent | AlertKind::RejectedMessages
            );
        if needs_minutes {
            check_minutes(self.after_minutes, "after_minutes")?;
        } else if !(self.after_minutes.is_finite()
            && (0.0..=MAX_AFTER_MINUTES).contains(&self.after_minutes))
        {
            return invalid("after_minutes must be 0 to 40320");
        }
        let target = self.target.filter(|t| t.is_finite());
        match self.kind {
            AlertKind::BelowReorderPoint => {
                if self.item_id.is_none() || !target.is_some_and(|t| t >= 0.0) {
                    return invalid("below_reorder_point needs item_id and a target of 0 or more");
                }
            }
            AlertKind::RejectedMessages => {
                if !target.is_some_and(|t| (1.0..=1e9).contains(&t)) {
                    return invalid("rejected_messages needs a target count of 1 or more");
                }
            }
            AlertKind::KpiBelowTarget => {
                if self.metric.is_none() || !target.is_some_and(|t| t > 0.0 && t <= 1.0) {
                    return invalid(
                        "kpi_below_target needs a metric and a target above 0, at most 1",
                    );
                }
            }
            _ => {
                if self.target.is_some() || self.item_id.is_some() || self.metric.is_some() {
                    return invalid("target, item_id and metric belong to other kinds of rule");
                }
            }
        }
        if self.item_id.is_some() && self.kind != AlertKind::BelowReorderPoint
            || self.metric.is_some() && self.kind != AlertKind::KpiBelowTarget
        {
            return invalid("item_id and metric belong to other kinds of rule");
        }
        if self.channels.is_empty() || self.channels.len() > MAX_CHANNELS {
            return Err(AlertRuleError::Invalid(format!(
                "a rule needs 1 to {MAX_CHANNELS} channels"
            )));
        }
        self.channels.iter().try_for_each(Channel::validate)?;
        if let Some(e) = &self.escalation {
            check_minutes(e.after_minutes, "escalation.after_minutes")?;
            if e.channels.is_empty() || e.channels.len() > MAX_CHANNELS {
                return Err(AlertRuleError::Invalid(format!(
                    "an escalation needs 1 to {MAX_CHANNELS} channels"
                )));
            }
            e.channels.iter().try_for_each(Channel::validate)?;
        }
        Ok(())
    }
}

/// Defines a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefineRule {
    pub rule_id: AlertRuleId,
    pub spec: RuleSpec,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Disables a rule for good (define a new one to change it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisableRule {
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Changes an enabled rule's definition (kind, scope, threshold, severity, channels,
/// escalation). Open alerts of the rule go on; from now on the rule is evaluated as
/// redefined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedefineRule {
    pub spec: RuleSpec,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AlertRuleCommand {
    DefineRule(DefineRule),
    RedefineRule(RedefineRule),
    DisableRule(DisableRule),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum AlertRuleEvent {
    AlertRuleDefined {
        rule_id: AlertRuleId,
        #[serde(flatten)]
        spec: RuleSpec,
        by: Actor,
        at: DateTime<Utc>,
    },
    AlertRuleRedefined {
        rule_id: AlertRuleId,
        #[serde(flatten)]
        spec: RuleSpec,
        by: Actor,
        at: DateTime<Utc>,
    },
    AlertRuleDisabled {
        rule_id: AlertRuleId,
        by: Actor,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for AlertRuleEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AlertRuleDefined { .. } => "AlertRuleDefined",
            Self::AlertRuleRedefined { .. } => "AlertRuleRedefined",
            Self::AlertRuleDisabled { .. } => "AlertRuleDisabled",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        String::from("1")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertRuleError {
    #[error("alert rule {rule_id} already exists")]
    AlreadyDefined { rule_id: AlertRuleId },
    #[error("the alert rule does not exist")]
    NotFound,
    #[error("the alert rule is already disabled")]
    AlreadyDisabled,
    #[error("{0}")]
    Invalid(String),
}

/// A defined rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub rule_id: AlertRuleId,
    pub spec: RuleSpec,
    pub enabled: bool,
    pub defined_by: Actor,
    pub defined_at: DateTime<Utc>,
}

/// The alert-rule aggregate: `None` until defined.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    rule: Option<Rule>,
}

impl AlertRule {
    pub fn rule(&self) -> Option<&Rule> {
        self.rule.as_ref()
    }
}

impl Decide for AlertRule {
    fn decide(&self, command: AlertRuleCommand) -> Result<Vec<AlertRuleEvent>, AlertRuleError> {
        match command {
            AlertRuleCommand::DefineRule(cmd) => {
                if self.rule.is_some() {
                    return Err(AlertRuleError::AlreadyDefined {
                        rule_id: cmd.rule_id,
                    });
                }
                cmd.spec.validate()?;
                Ok(vec![AlertRuleEvent::AlertRuleDefined {
                    rule_id: cmd.rule_id,
                    spec: cmd.spec,
                    by: cmd.by,
                    at: cmd.at,
                }])
            }
            AlertRuleCommand::RedefineRule(cmd) => {
                let rule = self.rule.as_ref().ok_or(AlertRuleError::NotFound)?;
                if !rule.enabled {
                    return Err(AlertRuleError::AlreadyDisabled);
                }
                cmd.spec.validate()?;
                if cmd.spec == rule.spec {
                    return Ok(vec![]);
                }
                Ok(vec![AlertRuleEvent::AlertRuleRedefined {
                    rule_id: rule.rule_id.clone(),
                    spec: cmd.spec,
                    by: cmd.by,
                    at: cmd.at,
                }])
            }
            AlertRuleCommand::DisableRule(cmd) => {
                let rule = self.rule.as_ref().ok_or(AlertRuleError::NotFound)?;
                if !rule.enabled {
                    return Err(AlertRuleError::AlreadyDisabled);
                }
                Ok(vec![AlertRuleEvent::AlertRuleDisabled {
                    rule_id: rule.rule_id.clone(),
                    by: cmd.by,
                    at: cmd.at,
                }])
            }
        }
    }
}

impl Aggregate for AlertRule {
    const TYPE: &'static str = crate::StreamType::AlertRule.as_str();
    type Command = AlertRuleCommand;
    type Event = AlertRuleEvent;
    type Error = AlertRuleError;
    type Services = ();

    crate::handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            AlertRuleEvent::AlertRuleDefined {
                rule_id,
                spec,
                by,
                at,
            } => {
                self.rule = Some(Rule {
                    rule_id,
                    spec,
                    enabled: true,
                    defined_by: by,
                    defined_at: at,
                })
            }
            AlertRuleEvent::AlertRuleRedefined { spec, .. } => {
                if let Some(rule) = self.rule.as_mut() {
                    rule.spec = spec;
                }
            }
            AlertRuleEvent::AlertRuleDisabled { .. } => {
                if let Some(rule) = self.rule.as_mut() {
                    rule.enabled = false;
                }
            }
        }
    }
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Acknowledged,
    Resolved,
}

impl AlertState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }
}

/// Raises an alert (the evaluator's command; the id derives from rule and cause).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaiseAlert {
    pub alert_id: AlertId,
    pub rule_id: AlertRuleId,
    pub kind: AlertKind,
    pub severity: Severity,
    pub machine_id: Option<MachineId>,
    /// What else the alert is about (the task or item), when not a machine alone.
    pub subject: Option<String>,
    /// The id of the event that started the condition.
    pub cause_event_id: String,
    /// Floor time the condition started.
    pub since: DateTime<Utc>,
    /// Floor time the rule's threshold was passed.
    pub raised_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcknowledgeAlert {
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Escalates to `level` (1 = the rule's escalation step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalateAlert {
    pub level: u32,
    pub at: DateTime<Utc>,
}

/// Resolves an alert: `by` is `None` when the condition cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolveAlert {
    pub by: Option<Actor>,
    pub reason: Text,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AlertCommand {
    RaiseAlert(RaiseAlert),
    AcknowledgeAlert(AcknowledgeAlert),
    EscalateAlert(EscalateAlert),
    ResolveAlert(ResolveAlert),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum AlertEvent {
    AlertRaised {
        #[serde(flatten)]
        alert: RaiseAlert,
    },
    AlertAcknowledged {
        alert_id: AlertId,
        by: Actor,
        at: DateTime<Utc>,
    },
    AlertEscalated {
        alert_id: AlertId,
        level: u32,
        at: DateTime<Utc>,
    },
    AlertResolved {
        alert_id: AlertId,
        by: Option<Actor>,
        reason: Text,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for AlertEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AlertRaised { .. } => "AlertRaised",
            Self::AlertAcknowledged { .. } => "AlertAcknowledged",
            Self::AlertEscalated { .. } => "AlertEscalated",
            Self::AlertResolved { .. } => "AlertResolved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        String::from("1")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("the alert does not exist")]
    NotFound,
    #[error("the alert is resolved")]
    Resolved,
}

/// A raised alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub raised: RaiseAlert,
    pub state: AlertState,
    pub acknowledged_by: Option<Actor>,
    pub escalations: u32,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// The alert aggregate: `None` until raised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    alert: Option<AlertRecord>,
}

impl Alert {
    pub fn alert(&self) -> Option<&AlertRecord> {
        self.alert.as_ref()
    }
}

impl Decide for Alert {
    fn decide(&self, command: AlertCommand) -> Result<Vec<AlertEvent>, AlertError> {
        let Some(alert) = &self.alert else {
            return match command {
                AlertCommand::RaiseAlert(raise) => {
                    Ok(vec![AlertEvent::AlertRaised { alert: raise }])
                }
                _ => Err(AlertError::NotFound),
            };
        };
        let alert_id = alert.raised.alert_id.clone();
        let event = match command {
            AlertCommand::RaiseAlert(_) => return Ok(vec![]),
            AlertCommand::AcknowledgeAlert(cmd) => match alert.state {
                AlertState::Resolved => return Err(AlertError::Resolved),
                AlertState::Acknowledged => return Ok(vec![]),
                AlertState::Open => AlertEvent::AlertAcknowledged {
                    alert_id,
                    by: cmd.by,
                    at: cmd.at,
                },
            },
            AlertCommand::EscalateAlert(cmd) => {
                if alert.state != AlertState::Open || cmd.level != alert.escalations + 1 {
                    return Ok(vec![]);
                }
                AlertEvent::AlertEscalated {
                    alert_id,
                    level: cmd.level,
                    at: cmd.at,
                }
            }
            AlertCommand::ResolveAlert(cmd) => {
                if alert.state == AlertState::Resolved {
                    return Ok(vec![]);
                }
                AlertEvent::AlertResolved {
                    alert_id,
                    by: cmd.by,
                    reason: cmd.reason,
                    at: cmd.at,
                }
            }
        };
        Ok(vec![event])
    }
}

impl Aggregate for Alert {
    const TYPE: &'static str = crate::StreamType::Alert.as_str();
    type Command = AlertCommand;
    type Event = AlertEvent;
    type Error = AlertError;
    type Services = ();

    crate::handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        if let AlertEvent::AlertRaised { alert } = event {
            self.alert = Some(AlertRecord {
                raised: alert,
                state: AlertState::Open,
                acknowledged_by: None,
                escalations: 0,
                resolved_at: None,
            });
            return;
        }
        let Some(alert) = self.alert.as_mut() else {
            return;
        };
        match event {
            AlertEvent::AlertRaised { .. } => {}
            AlertEvent::AlertAcknowledged { by, .. } => {
                alert.state = AlertState::Acknowledged;
                alert.acknowledged_by = Some(by);
            }
            AlertEvent::AlertEscalated { level, .. } => alert.escalations = level,
            AlertEvent::AlertResolved { at, .. } => {
                alert.state = AlertState::Resolved;
                alert.resolved_at = Some(at);
            }
        }
    }
}
