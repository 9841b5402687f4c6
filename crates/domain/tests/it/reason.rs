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
