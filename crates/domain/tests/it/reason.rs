//! The built-in reason-code catalogue.

use shopfloor_domain::reason::*;

#[test]
fn the_builtin_catalogue_holds_the_codes_the_system_relies_on() {
    let catalogue = ReasonCatalogue::builtin();
    for code in [
        "planned.break",
        "planned.maintenance",
        "planned.end_of_shift",
        "breakdown.mechanical",
        "breakdown.electrical",
        "setup.changeover",
        "small_stop.jam",
        NO_SIGNAL,
        "reduced_speed.slow_cycle",
        "quality.startup_reject",
        "quality.production_reject",
        UNCLASSIFIED,
    ] {
        assert!(catalogue.get(code).is_some(), "{code}");
    }
    let codes: Vec<&str> = catalogue
        .reasons()
        .iter()
        .map(|r| r.code.as_str())
        .collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(codes, sorted, "sorted and unique");
}

#[test]
fn each_code_knows_its_category_loss_and_planned_flag() {
    let catalogue = ReasonCatalogue::builtin();
    let brk = catalogue.get("planned.break").unwrap();
    assert!(brk.planned());
    assert_eq!((brk.category, brk.loss), (ReasonCategory::Planned, None));
    assert_eq!(brk.name, "Break");
    let no_signal = catalogue.get(NO_SIGNAL).unwrap();
    assert!(!no_signal.planned());
    assert_eq!(no_signal.loss, Some(Loss::SmallStop));
    let unclassified = catalogue.unclassified().unwrap();
    assert_eq!(
        (unclassified.category, unclassified.loss),
        (ReasonCategory::Unplanned, None)
    );
    for (code, loss) in [
        ("breakdown.mechanical", Loss::Breakdown),
        ("setup.changeover", Loss::SetupAdjustment),
        ("small_stop.jam", Loss::SmallStop),
        ("reduced_speed.slow_cycle", Loss::ReducedSpeed),
        ("quality.startup_reject", Loss::StartupReject),
        ("quality.production_reject", Loss::ProductionReject),
    ] {
        assert_eq!(catalogue.get(code).unwrap().loss, Some(loss), "{code}");
    }
    // Every unplanned code but `unclassified` has a loss; no planned code has one.
    for reason in catalogue.reasons() {
        let has_loss = reason.loss.is_some();
        let expected = !reason.planned() && reason.code.as_str() != UNCLASSIFIED;
        assert_eq!(has_loss, expected, "{}", reason.code);
    }
}

#[test]
fn lookup_ignores_case_and_surrounding_space() {
    let catalogue = ReasonCatalogue::builtin();
    assert_eq!(
        catalogue
            .get(" Breakdown.Mechanical ")
            .unwrap()
            .code
            .as_str(),
        "breakdown.mechanical"
    );
    assert!(catalogue.get("waiting for forklift").is_none());
}

#[test]
fn the_catalogue_lists_as_a_tree_and_serializes() {
    let catalogue = ReasonCatalogue::builtin();
    let tree = catalogue.tree();
    let groups: Vec<&str> = tree.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(
        groups,
        [
            "breakdown",
            "planned",
            "quality",
            "reduced_speed",
            "setup",
            "small_stop",
            "unclassified"
        ]
    );
    assert_eq!(
        tree.iter().map(|g| g.reasons.len()).sum::<usize>(),
        catalogue.reasons().len()
    );
    let json = serde_json::to_value(catalogue).unwrap();
    assert_eq!(
        json["reasons"][0],
        serde_json::json!({
            "code": "breakdown.electrical",
            "name": "Electrical failure",
            "category": "unplanned",
            "loss": "breakdown"
        })
    );
    let back: ReasonCatalogue = serde_json::from_value(json).unwrap();
    assert_eq!(&back, catalogue);
    assert_eq!(&ReasonCatalogue::default(), catalogue);
}

#[test]
fn a_custom_catalogue_always_has_unclassified() {
    let catalogue = ReasonCatalogue::new([]);
    assert!(catalogue.unclassified().is_some());
}

mod plant {
    use chrono::{TimeZone, Utc};
    use shopfloor_domain::reason::{Loss, ReasonCategory};
    use shopfloor_domain::reason_codes::*;
    use shopfloor_domain::values::{Actor, ReasonCode, Text};
    use shopfloor_domain::Decide;

    fn define(code: &str, category: ReasonCategory, loss: Option<Loss>) -> ReasonCodeCommand {
        ReasonCodeCommand::DefineReasonCode(DefineReasonCode {
            code: ReasonCode::new(code).unwrap(),
            name: Text::new(format!("name of {code}")).unwrap(),
            category,
            loss,
            by: Actor::new("sup").unwrap(),
            at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        })
    }

    fn retire(code: &str) -> ReasonCodeCommand {
        ReasonCodeCommand::RetireReasonCode(RetireReasonCode {
            code: ReasonCode::new(code).unwrap(),
            by: Actor::new("sup").unwrap(),
            at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        })
    }

    #[test]
    fn the_plant_catalogue_is_the_builtin_one_amended() {
        let mut plant = PlantReasons::default();
        assert_eq!(
            &plant.catalogue(),
            shopfloor_domain::reason::ReasonCatalogue::builtin()
        );
        let unplanned = ReasonCategory::Unplanned;
        plant
            .execute(define(
                "breakdown.hydraulic",
                unplanned,
                Some(Loss::Breakdown),
            ))
            .unwrap();
        plant.execute(retire("small_stop.jam")).unwrap();
        let catalogue = plant.catalogue();
        assert_eq!(
            catalogue.get("breakdown.hydraulic").unwrap().loss,
            Some(Loss::Breakdown)
        );
        assert!(catalogue.get("small_stop.jam").is_none());
        assert!(catalogue.get("unclassified").is_some());
        let jam = plant
            .listing()
            .into_iter()
            .find(|r| r.definition.code.as_str() == "small_stop.jam")
            .unwrap();
        assert!(jam.retired && jam.builtin);
        // The same again decides nothing; retiring twice neither.
        assert!(plant
            .decide(define(
                "breakdown.hydraulic",
                unplanned,
                Some(Loss::Breakdown)
            ))
            .unwrap()
            .is_empty());
        assert!(plant.decide(retire("small_stop.jam")).unwrap().is_empty());
        // Defining a retired code brings it back.
        plant
            .execute(define("small_stop.jam", unplanned, Some(Loss::SmallStop)))
            .unwrap();
        assert!(plant.catalogue().get("small_stop.jam").is_some());
    }

    #[test]
    fn malformed_and_inconsistent_definitions_are_refused() {
        let plant = PlantReasons::default();
        let planned = ReasonCategory::Planned;
        let unplanned = ReasonCategory::Unplanned;
        for (command, wanted) in [
            (
                define("unclassified", unplanned, Some(Loss::Breakdown)),
                "unclassified",
            ),
            (
                define("hydraulic", unplanned, Some(Loss::Breakdown)),
                "group.leaf",
            ),
            (
                define("a.b.c", unplanned, Some(Loss::Breakdown)),
                "group.leaf",
            ),
            (
                define("Breakdown.X", unplanned, Some(Loss::Breakdown)),
                "group.leaf",
            ),
            (
                define("scrap.burr", unplanned, Some(Loss::Breakdown)),
                "scrap",
            ),
            (
                define("planned.lunch", planned, Some(Loss::Breakdown)),
                "no loss",
            ),
            (define("breakdown.x", unplanned, None), "big loss"),
            (retire("breakdown.nonesuch"), "does not exist"),
        ] {
            let refused = plant.decide(command).unwrap_err().to_string();
            assert!(refused.contains(wanted), "{refused} should say {wanted}");
        }
    }
}
