//! Placement's unit tests: each rule of `PLACEMENT.md`, decided on plain structs.

use super::*;
use std::time::Duration;
use PlacementPolicy::{BestFit, Spread};

const GIB: u64 = 1 << 30;

fn res(cpu: u64, mem_gib: u64, gpus: u32) -> Resources {
    Resources {
        cpu_millis: cpu,
        memory_bytes: mem_gib * GIB,
        gpus,
        disk_bytes: 0,
    }
}

fn worker(id: &str, cap: Resources, used: Resources) -> WorkerSlot {
    WorkerSlot {
        id: id.into(),
        capacity: cap,
        free: cap.saturating_sub(&used),
        schedulable: true,
        attributes: Arc::default(),
    }
}

fn reg(ws: &[WorkerSlot]) -> impl Iterator<Item = Registered<'_>> {
    ws.iter().map(WorkerSlot::registered)
}

fn ask(request: Resources) -> TaskAsk<'static> {
    TaskAsk::sized(request)
}

fn two_sizes() -> Vec<WorkerSlot> {
    vec![
        worker("big", res(8000, 16, 0), res(0, 0, 0)),
        worker("small", res(2000, 4, 0), res(0, 0, 0)),
    ]
}

#[test]
fn best_fit_takes_the_tightest_worker() {
    let ws = two_sizes();
    assert_eq!(place(BestFit, &ws, &ask(res(1000, 1, 0))), Ok(1));
}

#[test]
fn spread_takes_the_emptiest_worker() {
    let ws = two_sizes();
    assert_eq!(place(Spread, &ws, &ask(res(1000, 1, 0))), Ok(0));
}

#[test]
fn best_fit_uses_free_not_capacity() {
    // "big" is nearly full, so placing there leaves less than on the empty "small".
    let ws = vec![
        worker("big", res(8000, 16, 0), res(7000, 15, 0)),
        worker("small", res(2000, 4, 0), res(0, 0, 0)),
    ];
    assert_eq!(place(BestFit, &ws, &ask(res(500, 0, 0))), Ok(0));
    assert_eq!(place(Spread, &ws, &ask(res(500, 0, 0))), Ok(1));
}

#[test]
fn a_request_that_fits_only_the_big_worker_goes_there() {
    let ws = two_sizes();
    for policy in [BestFit, Spread] {
        assert_eq!(place(policy, &ws, &ask(res(4000, 8, 0))), Ok(0));
    }
}

#[test]
fn a_task_that_fits_nowhere_waits() {
    let ws = two_sizes();
    for policy in [BestFit, Spread] {
        assert_eq!(
            place(policy, &ws, &ask(res(16_000, 1, 0))),
            Err(Reject::NoWorkerFits)
        );
        assert_eq!(
            place(policy, &ws, &ask(res(0, 0, 1))),
            Err(Reject::NoWorkerFits)
        );
    }
    assert_eq!(
        place(BestFit, &[], &ask(res(0, 0, 0))),
        Err(Reject::NoWorkerFits)
    );
}

#[test]
fn every_dimension_must_fit() {
    let ws = vec![worker("w", res(4000, 4, 1), res(0, 0, 0))];
    assert_eq!(place(BestFit, &ws, &ask(res(4000, 4, 1))), Ok(0));
    assert!(place(BestFit, &ws, &ask(res(4001, 4, 1))).is_err());
    assert!(place(BestFit, &ws, &ask(res(4000, 5, 1))).is_err());
    assert!(place(BestFit, &ws, &ask(res(4000, 4, 2))).is_err());
    let mut disk = ask(res(0, 0, 0));
    disk.request.disk_bytes = 1;
    assert!(place(BestFit, &ws, &disk).is_err());
}

#[test]
fn unschedulable_workers_get_nothing() {
    let mut ws = two_sizes();
    ws[1].schedulable = false;
    assert_eq!(place(BestFit, &ws, &ask(res(1000, 1, 0))), Ok(0));
    ws[0].schedulable = false;
    assert_eq!(
        place(BestFit, &ws, &ask(res(1000, 1, 0))),
        Err(Reject::NoWorkerFits)
    );
}

#[test]
fn pinned_task_goes_only_to_its_worker() {
    let ws = two_sizes();
    let t = TaskAsk {
        pinned: Some("big"),
        ..ask(res(1000, 1, 0))
    };
    // Best fit alone would pick "small".
    assert_eq!(place(BestFit, &ws, &t), Ok(0));
    assert_eq!(place(Spread, &ws, &t), Ok(0));
}

#[test]
fn pinned_task_waits_when_its_worker_is_full_unhealthy_or_unknown() {
    let mut ws = two_sizes();
    let t = TaskAsk {
        pinned: Some("small"),
        ..ask(res(3000, 1, 0))
    };
    assert_eq!(
        place(BestFit, &ws, &t),
        Err(Reject::DoesNotFit {
            worker: "small".into(),
            short: Shortfall {
                resource: "cpu_millis",
                requested: 3000,
                available: 2000
            }
        })
    );
    let t = TaskAsk {
        pinned: Some("small"),
        ..ask(res(1000, 1, 0))
    };
    ws[1].schedulable = false;
    assert_eq!(
        place(BestFit, &ws, &t),
        Err(Reject::Unschedulable("small".into()))
    );
    let t = TaskAsk {
        pinned: Some("ghost"),
        ..ask(res(0, 0, 0))
    };
    assert_eq!(
        place(BestFit, &ws, &t),
        Err(Reject::PinnedWorkerUnknown("ghost".into()))
    );
}

#[test]
fn ties_go_to_the_lowest_id() {
    let ws = vec![
        worker("b", res(1000, 1, 0), res(0, 0, 0)),
        worker("a", res(1000, 1, 0), res(0, 0, 0)),
    ];
    for policy in [BestFit, Spread] {
        assert_eq!(place(policy, &ws, &ask(res(100, 0, 0))), Ok(1));
    }
}

#[test]
fn best_fit_keeps_gpu_workers_for_gpu_tasks() {
    let ws = vec![
        worker("gpu", res(4000, 8, 2), res(0, 0, 0)),
        worker("cpu", res(8000, 16, 0), res(0, 0, 0)),
    ];
    assert_eq!(place(BestFit, &ws, &ask(res(1000, 1, 0))), Ok(1));
    assert_eq!(place(BestFit, &ws, &ask(res(1000, 1, 1))), Ok(0));
}

#[test]
fn plan_never_over_commits_and_backfills() {
    let mut ws = two_sizes();
    let tasks = [
        ask(res(1500, 1, 0)), // small
        ask(res(9000, 1, 0)), // fits nowhere: skipped, does not block the rest
        ask(res(1500, 1, 0)), // small is too full now: big
        ask(res(6500, 1, 0)), // big has 6500 left
        ask(res(1, 0, 0)),    // small has 500 left
        ask(res(600, 0, 0)),  // nothing has 600 left
    ];
    let placed = plan(BestFit, &mut ws, &tasks, None);
    assert_eq!(placed, vec![(0, 1), (2, 0), (3, 0), (4, 1)]);
    assert_eq!(ws[0].free.cpu_millis, 0);
    assert_eq!(ws[1].free.cpu_millis, 499);
    let mut total = [0u64; 2];
    for (t, w) in &placed {
        total[*w] += tasks[*t].request.cpu_millis;
    }
    assert!(total[0] <= 8000 && total[1] <= 2000);
}

#[test]
fn plan_spreads_evenly_under_spread() {
    let mut ws = vec![
        worker("a", res(4000, 4, 0), res(0, 0, 0)),
        worker("b", res(4000, 4, 0), res(0, 0, 0)),
    ];
    let tasks = [ask(res(1000, 1, 0)); 4];
    let placed = plan(Spread, &mut ws, &tasks, None);
    let on_a = placed.iter().filter(|(_, w)| *w == 0).count();
    assert_eq!((placed.len(), on_a), (4, 2));
    let mut ws2 = ws.clone();
    ws2[0].free = ws2[0].capacity;
    ws2[1].free = ws2[1].capacity;
    let packed = plan(BestFit, &mut ws2, &tasks, None);
    assert!(packed.iter().all(|(_, w)| *w == packed[0].1));
}

#[test]
fn zero_requests_fit_anywhere_schedulable() {
    let ws = vec![worker("w", res(0, 0, 0), res(0, 0, 0))];
    assert_eq!(place(BestFit, &ws, &ask(res(0, 0, 0))), Ok(0));
}

#[test]
fn check_explains_each_rejection() {
    let w = worker("w", res(1000, 1, 0), res(0, 0, 0));
    let t = TaskAsk {
        pinned: Some("v"),
        ..ask(res(0, 0, 0))
    };
    assert_eq!(check(&w, &t), Err(Reject::PinnedElsewhere("v".into())));
    let short = check(&w, &ask(res(2000, 0, 0))).unwrap_err();
    assert_eq!(
        short.to_string(),
        "request does not fit the free capacity of w: cpu_millis 2000 requested, 1000 available"
    );
    assert_eq!(check(&w, &ask(res(1000, 1, 0))), Ok(()));
}

fn with_attrs(mut w: WorkerSlot, pairs: &[(&str, &str)]) -> WorkerSlot {
    w.attributes = Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    w
}

fn zones() -> Vec<WorkerSlot> {
    vec![
        with_attrs(
            worker("a1", res(4000, 8, 0), res(0, 0, 0)),
            &[("zone", "a"), ("disk", "ssd")],
        ),
        with_attrs(
            worker("b1", res(8000, 16, 0), res(0, 0, 0)),
            &[("zone", "b"), ("disk", "hdd")],
        ),
        with_attrs(
            worker("c1", res(2000, 4, 0), res(0, 0, 0)),
            &[("zone", "c")],
        ),
    ]
}

fn constrained<'a>(request: Resources, cs: &'a [Constraint], ps: &'a [Preference]) -> TaskAsk<'a> {
    TaskAsk {
        constraints: cs,
        prefer: ps,
        ..ask(request)
    }
}

fn parse<T: std::str::FromStr>(items: &[&str]) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    items.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn constraints_exclude_workers_whatever_the_fit() {
    let ws = zones();
    let small = res(500, 1, 0);
    for (cs, want) in [
        (vec!["zone=b"], Ok(1)),
        (vec!["zone in (a,c)"], Ok(2)), // best fit: c1 is the tightest of a1, c1
        (vec!["disk!=hdd"], Ok(2)),     // c1 has no disk attribute: != holds
        (vec!["disk exists"], Ok(0)),   // a1 is tighter than b1
        (vec!["zone not in (a,b,c)"], Err(Reject::NoWorkerFits)),
        (vec!["zone=a", "disk=hdd"], Err(Reject::NoWorkerFits)),
    ] {
        let cs: Vec<Constraint> = parse(&cs);
        assert_eq!(
            place(BestFit, &ws, &constrained(small, &cs, &[])),
            want,
            "{cs:?}"
        );
    }
    // A constraint holds even when it leaves only a worker without room.
    let cs: Vec<Constraint> = parse(&["zone=c"]);
    assert_eq!(
        place(BestFit, &ws, &constrained(res(3000, 1, 0), &cs, &[])),
        Err(Reject::NoWorkerFits)
    );
}

#[test]
fn check_names_the_failed_constraint() {
    let ws = zones();
    let cs: Vec<Constraint> = parse(&["disk exists", "zone in (b)"]);
    assert_eq!(
        check(&ws[0], &constrained(res(1, 0, 0), &cs, &[])),
        Err(Reject::ConstraintUnmet {
            worker: "a1".into(),
            constraint: "zone in (b)".into()
        })
    );
    let pinned = TaskAsk {
        pinned: Some("a1"),
        ..constrained(res(1, 0, 0), &cs, &[])
    };
    assert!(matches!(
        place(BestFit, &ws, &pinned),
        Err(Reject::ConstraintUnmet { .. })
    ));
}

#[test]
fn preferences_come_before_the_fit_but_never_before_eligibility() {
    let ws = zones();
    let small = res(500, 1, 0);
    // Best fit alone picks c1; spread alone picks b1.
    assert_eq!(place(BestFit, &ws, &ask(small)), Ok(2));
    assert_eq!(place(Spread, &ws, &ask(small)), Ok(1));
    let ps: Vec<Preference> = parse(&["zone=a"]);
    for policy in [BestFit, Spread] {
        assert_eq!(place(policy, &ws, &constrained(small, &[], &ps)), Ok(0));
    }
    // Two preferences: the worker matching both wins over one matching one.
    let ps: Vec<Preference> = parse(&["disk=hdd", "zone=b"]);
    assert_eq!(place(BestFit, &ws, &constrained(small, &[], &ps)), Ok(1));
    // A preferred worker without room is passed over, not waited for.
    let ps: Vec<Preference> = parse(&["zone=c"]);
    assert_eq!(
        place(BestFit, &ws, &constrained(res(3000, 1, 0), &[], &ps)),
        Ok(0)
    );
    // Preferences never override a constraint.
    let cs: Vec<Constraint> = parse(&["zone!=a"]);
    let ps: Vec<Preference> = parse(&["zone=a"]);
    assert_eq!(place(BestFit, &ws, &constrained(small, &cs, &ps)), Ok(2));
}

#[test]
fn shortfall_names_the_first_dimension_short() {
    let have = res(1000, 2, 1);
    assert_eq!(shortfall(&res(1000, 2, 1), &have), None);
    let s = shortfall(&res(1000, 3, 2), &have).unwrap();
    assert_eq!(
        (s.resource, s.requested, s.available),
        ("memory_bytes", 3 << 30, 2 << 30)
    );
    let s = shortfall(&res(0, 0, 2), &have).unwrap();
    assert_eq!((s.resource, s.requested, s.available), ("gpus", 2, 1));
}

#[test]
fn feasible_judges_capacity_and_constraints_not_what_runs_now() {
    let mut ws = zones();
    // Full and unhealthy workers still count: what runs ends, health comes back.
    ws[1].free = Resources::default();
    ws[1].schedulable = false;
    assert_eq!(feasible(reg(&ws), &ask(res(8000, 16, 0))), Ok(()));
    // a1 lacks the zone, c1 the CPU: one thing each, so the lower id is named.
    let cs: Vec<Constraint> = parse(&["zone=c"]);
    let lack = feasible(reg(&ws), &constrained(res(3000, 1, 0), &cs, &[])).unwrap_err();
    assert_eq!(lack.worker, "a1");
    assert_eq!(lack.missing, ["zone=c (it has zone=a)"]);
    // Asking for more memory than a1 and c1 have: they lack two things, b1 one.
    let lack = feasible(reg(&ws), &constrained(res(3000, 9, 0), &cs, &[])).unwrap_err();
    assert_eq!(lack.worker, "b1");
    assert_eq!(lack.missing, ["zone=c (it has zone=b)"]);
    // Each thing lacking is named: b1 lacks only the GPU, the others more.
    let lack = feasible(reg(&ws), &ask(res(8000, 16, 1))).unwrap_err();
    assert_eq!(lack.worker, "b1");
    assert_eq!(lack.missing, ["gpus 1 requested, 0 available"]);
    let lack = feasible(reg(&ws), &ask(res(9000, 32, 1))).unwrap_err();
    assert_eq!(lack.missing.len(), 3, "{lack}");
    let cs: Vec<Constraint> = parse(&["zone=a", "gpu.model in (a100,h100)"]);
    let lack = feasible(reg(&ws), &constrained(res(1, 0, 0), &cs, &[])).unwrap_err();
    assert_eq!(lack.worker, "a1");
    assert_eq!(
        lack.to_string(),
        "closest worker a1 lacks gpu.model in (a100,h100) (it has no gpu.model)"
    );
    // Nothing registered: no verdict. A pin to an unknown worker: that one is named.
    assert_eq!(feasible(reg(&[]), &ask(res(1, 0, 0))), Ok(()));
    let pinned = TaskAsk {
        pinned: Some("ghost"),
        ..ask(res(1, 0, 0))
    };
    assert_eq!(
        feasible(reg(&ws), &pinned).unwrap_err().missing,
        ["is not registered"]
    );
    let pinned = TaskAsk {
        pinned: Some("c1"),
        ..ask(res(4000, 1, 0))
    };
    assert_eq!(feasible(reg(&ws), &pinned).unwrap_err().worker, "c1");
}

fn waited(request: Resources, secs: u64) -> TaskAsk<'static> {
    TaskAsk {
        waited: Duration::from_secs(secs),
        ..ask(request)
    }
}

#[test]
fn backfill_lets_small_tasks_pass_a_big_one_until_it_starves() {
    // "w" runs 3000 of its 4000; the big task wants all of it; small ones keep coming.
    let fresh = || vec![worker("w", res(4000, 8, 0), res(3000, 0, 0))];
    let tasks = [waited(res(4000, 1, 0), 5), ask(res(1000, 1, 0))];
    let starve = Some(Duration::from_secs(30));
    // Not starving yet: the small one backfills.
    assert_eq!(plan(BestFit, &mut fresh(), &tasks, starve), vec![(1, 0)]);
    // Pure backfill never holds, however long the big one waited.
    let old = [waited(res(4000, 1, 0), 3600), ask(res(1000, 1, 0))];
    assert_eq!(plan(BestFit, &mut fresh(), &old, None), vec![(1, 0)]);
    // Starving: the worker is held, the small one is not placed there.
    let mut ws = fresh();
    assert_eq!(plan(BestFit, &mut ws, &old, starve), vec![]);
    assert!(ws[0].schedulable, "the hold lasts one batch only");
    assert_eq!(ws[0].free.cpu_millis, 1000, "nothing was deducted");
}

#[test]
fn a_hold_takes_the_worker_closest_to_fitting_and_leaves_the_others() {
    let mut ws = vec![
        worker("almost", res(4000, 8, 0), res(1000, 0, 0)),
        worker("busy", res(4000, 8, 0), res(4000, 0, 0)),
        worker("small", res(2000, 8, 0), res(0, 0, 0)),
    ];
    let big = waited(res(4000, 1, 0), 60);
    assert_eq!(
        hold_for(&ws, &big),
        Some(0),
        "a quarter left to free beats all of it"
    );
    let tasks = [big, ask(res(1000, 1, 0)), ask(res(1000, 1, 0))];
    let placed = plan(BestFit, &mut ws, &tasks, Some(Duration::from_secs(30)));
    // Both small tasks go to "small"; "almost" is held, "busy" is full.
    assert_eq!(placed, vec![(1, 2), (2, 2)]);
    // Only workers that could ever take it are held; a pin and constraints count.
    let huge = waited(res(8000, 1, 0), 60);
    assert_eq!(hold_for(&ws, &huge), None);
    let pinned = TaskAsk {
        pinned: Some("busy"),
        ..big
    };
    assert_eq!(hold_for(&ws, &pinned), Some(1));
    let cs: Vec<Constraint> = parse(&["zone=x"]);
    assert_eq!(hold_for(&ws, &constrained(res(1, 0, 0), &cs, &[])), None);
    ws[0].schedulable = false;
    assert_eq!(
        hold_for(&ws, &big),
        Some(1),
        "an unhealthy worker is not held"
    );
}

#[test]
fn only_the_first_starving_task_holds() {
    let mut ws = vec![
        worker("a", res(4000, 8, 0), res(1000, 0, 0)),
        worker("b", res(4000, 8, 0), res(2000, 0, 0)),
    ];
    // Two starving big tasks: the first holds "a"; the second cannot take "b" (it does
    // not fit) and holds nothing; a small one still goes to "b".
    let tasks = [
        waited(res(4000, 1, 0), 60),
        waited(res(4000, 1, 0), 60),
        ask(res(1000, 1, 0)),
    ];
    assert_eq!(
        plan(BestFit, &mut ws, &tasks, Some(Duration::from_secs(30))),
        vec![(2, 1)]
    );
}

/// `plan` matches attributes once per shape of task: its choices are exactly those of
/// placing each task alone, in order, against the free capacity left by the ones before.
#[test]
fn plan_with_shapes_chooses_as_placing_one_by_one() {
    let zone_a: Vec<Constraint> = parse(&["zone in (a,b)"]);
    let not_c: Vec<Constraint> = parse(&["zone!=c"]);
    let pref_b: Vec<Preference> = parse(&["zone=b"]);
    let tasks: Vec<TaskAsk<'_>> = (0..12)
        .map(|i| match i % 4 {
            0 => constrained(res(1500, 2, 0), &zone_a, &[]),
            1 => constrained(res(1000, 1, 0), &not_c, &pref_b),
            2 => constrained(res(600, 1, 0), &[], &pref_b),
            _ => ask(res(700, 1, 0)),
        })
        .collect();
    for policy in [BestFit, Spread] {
        let mut planned = zones();
        let got = plan(policy, &mut planned, &tasks, None);
        let mut one_by_one = zones();
        let mut want = Vec::new();
        for (t, task) in tasks.iter().enumerate() {
            if let Ok(w) = place(policy, &one_by_one, task) {
                one_by_one[w].free = one_by_one[w].free.saturating_sub(&task.request);
                want.push((t, w));
            }
        }
        assert_eq!(got, want, "{policy:?}");
        assert!(got.len() >= 8, "most of them fit: {got:?}");
    }
}
