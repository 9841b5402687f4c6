//! Alert rules and alerts: given events, when a command, then events or the exact error.

use chrono::{DateTime, TimeZone, Utc};
use shopfloor_domain::alert::*;
use shopfloor_domain::values::*;
use shopfloor_domain::{Alert, AlertRule, Decide};

fn t(m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 6, m, 0).unwrap()
}

fn spec(after: f64, channels: Vec<Channel>) -> RuleSpec {
    RuleSpec {
        kind: AlertKind::MachineDown,
        machine_id: Some(MachineId::new("M-1").unwrap()),
        line: None,
        after_minutes: after,
        severity: Severity::Critical,
        channels,
        escalation: None,
        target: None,
        item_id: None,
        metric: None,
    }
}

fn hook() -> Channel {
    Channel::Webhook {
        url: "https://hooks.example/x".into(),
        secret: "s3cret".into(),
    }
}

fn define(after: f64, channels: Vec<Channel>) -> AlertRuleCommand {
    AlertRuleCommand::DefineRule(DefineRule {
        rule_id: AlertRuleId::new("R-1").unwrap(),
        spec: spec(after, channels),
        by: Actor::new("sup").unwrap(),
        at: t(0),
    })
}

#[test]
fn a_rule_needs_a_threshold_above_zero_and_a_valid_channel() {
    let rule = AlertRule::default();
    for after in [0.0, -1.0, f64::NAN, 1e9] {
        assert!(matches!(
            rule.decide(define(after, vec![hook()])),
            Err(AlertRuleError::Invalid(_))
        ));
    }
    assert!(matches!(
        rule.decide(define(5.0, vec![])),
        Err(AlertRuleError::Invalid(_))
    ));
    let bad = Channel::Email {
        to: vec!["not-an-address".into()],
    };
    assert!(matches!(
        rule.decide(define(5.0, vec![bad])),
        Err(AlertRuleError::Invalid(_))
    ));
    let mut rule = AlertRule::default();
    rule.execute(define(5.0, vec![hook()])).unwrap();
    assert_eq!(
        rule.decide(define(5.0, vec![hook()])),
        Err(AlertRuleError::AlreadyDefined {
            rule_id: AlertRuleId::new("R-1").unwrap()
        })
    );
}

#[test]
fn the_secret_is_kept_in_the_event_and_hidden_from_debug() {
    let mut rule = AlertRule::default();
    let events = rule.execute(define(5.0, vec![hook()])).unwrap();
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(json["event_type"], "AlertRuleDefined");
    assert_eq!(json["channels"][0]["secret"], "s3cret");
    assert_eq!(json["after_minutes"], 5.0);
    assert!(!format!("{events:?}").contains("s3cret"));
    let back: AlertRuleEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back, events[0]);
}

fn raise() -> AlertCommand {
    AlertCommand::RaiseAlert(RaiseAlert {
        alert_id: AlertId::new("AL-1").unwrap(),
        rule_id: AlertRuleId::new("R-1").unwrap(),
        kind: AlertKind::MachineDown,
        severity: Severity::Critical,
        machine_id: Some(MachineId::new("M-1").unwrap()),
        subject: None,
        cause_event_id: "e-1".into(),
        since: t(0),
        raised_at: t(5),
    })
}

#[test]
fn an_alert_is_raised_once_acknowledged_once_and_escalated_only_while_open() {
    let mut alert = Alert::default();
    let ack = || {
        AlertCommand::AcknowledgeAlert(AcknowledgeAlert {
            by: Actor::new("op").unwrap(),
            at: t(7),
        })
    };
    assert_eq!(alert.decide(ack()), Err(AlertError::NotFound));
    assert_eq!(alert.execute(raise()).unwrap().len(), 1);
    assert!(alert.execute(raise()).unwrap().is_empty(), "raised twice");
    let escalate = |level| AlertCommand::EscalateAlert(EscalateAlert { level, at: t(8) });
    assert!(alert.decide(escalate(2)).unwrap().is_empty());
    assert_eq!(alert.execute(escalate(1)).unwrap().len(), 1);
    assert!(alert.execute(escalate(1)).unwrap().is_empty());
    assert_eq!(alert.execute(ack()).unwrap().len(), 1);
    assert!(alert.execute(ack()).unwrap().is_empty());
    assert!(
        alert.decide(escalate(2)).unwrap().is_empty(),
        "escalated after the ack"
    );
    let resolve = AlertCommand::ResolveAlert(ResolveAlert {
        by: None,
        reason: Text::new("cleared").unwrap(),
        at: t(9),
    });
    assert_eq!(alert.execute(resolve.clone()).unwrap().len(), 1);
    assert!(alert.execute(resolve).unwrap().is_empty());
    assert_eq!(alert.decide(ack()), Err(AlertError::Resolved));
    let record = alert.alert().unwrap();
    assert_eq!(record.state, AlertState::Resolved);
    assert_eq!(record.acknowledged_by.as_ref().unwrap().as_str(), "op");
    assert_eq!(record.escalations, 1);
}

#[test]
fn an_enabled_rule_is_redefined_and_the_same_definition_again_changes_nothing() {
    let redefine = |after: f64| {
        AlertRuleCommand::RedefineRule(RedefineRule {
            spec: spec(after, vec![hook()]),
            by: Actor::new("sup-2").unwrap(),
            at: t(9),
        })
    };
    let mut rule = AlertRule::default();
    assert_eq!(rule.decide(redefine(5.0)), Err(AlertRuleError::NotFound));
    rule.execute(define(5.0, vec![hook()])).unwrap();
    assert_eq!(rule.decide(redefine(5.0)), Ok(vec![]));
    assert!(matches!(
        rule.decide(redefine(0.0)),
        Err(AlertRuleError::Invalid(_))
    ));
    let events = rule.execute(redefine(12.0)).unwrap();
    assert_eq!(events.len(), 1);
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(json["event_type"], "AlertRuleRedefined");
    assert_eq!(json["after_minutes"], 12.0);
    assert_eq!(rule.rule().unwrap().spec.after_minutes, 12.0);
    let disable = AlertRuleCommand::DisableRule(DisableRule {
        by: Actor::new("sup").unwrap(),
        at: t(10),
    });
    rule.execute(disable).unwrap();
    assert_eq!(
        rule.decide(redefine(20.0)),
        Err(AlertRuleError::AlreadyDisabled)
    );
}
