use super::*;

const GIB: u64 = 1 << 30;

fn res(cpu: u64, mem_gib: u64) -> Resources {
    Resources {
        cpu_millis: cpu,
        memory_bytes: mem_gib * GIB,
        ..Resources::default()
    }
}

/// `n` tasks per group, enqueued group by group (group 0's all older), each of its shape.
fn cands(shapes: &[(i32, Resources)], n: usize) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (g, (priority, request)) in shapes.iter().enumerate() {
        for _ in 0..n {
            out.push(Candidate {
                id: TaskId::new(),
                priority: *priority,
                request: *request,
                group: g,
            });
        }
    }
    out
}

fn groups_of(c: &[Candidate], o: &Ordered) -> Vec<usize> {
    o.order.iter().map(|&i| c[i].group).collect()
}

const TOTAL: Resources = Resources {
    cpu_millis: 10_000,
    memory_bytes: 100 * GIB,
    gpus: 0,
    disk_bytes: 0,
};

#[test]
fn equal_submitters_alternate_though_one_enqueued_first() {
    let c = cands(&[(0, res(1000, 1)), (0, res(1000, 1))], 4);
    let o = order(&c, &[Group::default(); 2], &TOTAL, true);
    assert_eq!(groups_of(&c, &o), [0, 1, 0, 1, 0, 1, 0, 1]);
    assert!(o.over_quota.is_empty());
}

#[test]
fn with_fair_share_off_the_oldest_go_first() {
    let c = cands(&[(0, res(1000, 1)), (0, res(1000, 1))], 3);
    let o = order(&c, &[Group::default(); 2], &TOTAL, false);
    assert_eq!(groups_of(&c, &o), [0, 0, 0, 1, 1, 1]);
}

#[test]
fn priority_comes_before_share() {
    // Group 1 is newer and already holds most of the cluster, but its task outranks.
    let c = cands(&[(0, res(1000, 1)), (5, res(1000, 1))], 2);
    let busy = Group {
        used: Usage {
            reserved: res(9000, 1),
            running: 9,
        },
        quota: Quota::default(),
    };
    let o = order(&c, &[Group::default(), busy], &TOTAL, true);
    assert_eq!(groups_of(&c, &o), [1, 1, 0, 0]);
}

#[test]
fn the_dominant_resource_decides_how_many_each_gets() {
    // Group 0's tasks take 20% of the CPU each, group 1's 10% of the memory: DRF gives
    // group 1 two tasks for each of group 0's.
    let c = cands(&[(0, res(2000, 1)), (0, res(100, 10))], 6);
    let o = order(&c, &[Group::default(); 2], &TOTAL, true);
    let first9 = &groups_of(&c, &o)[..9];
    assert_eq!(first9.iter().filter(|&&g| g == 0).count(), 3, "{first9:?}");
    assert_eq!(first9.iter().filter(|&&g| g == 1).count(), 6, "{first9:?}");
}

#[test]
fn what_a_submitter_already_runs_counts() {
    // Group 0 holds 40% of the CPU: group 1 gets four tasks before group 0 gets one.
    let c = cands(&[(0, res(1000, 1)), (0, res(1000, 1))], 6);
    let holding = Group {
        used: Usage {
            reserved: res(4000, 4),
            running: 4,
        },
        quota: Quota::default(),
    };
    let o = order(&c, &[holding, Group::default()], &TOTAL, true);
    // Group 1 at 40% ties group 0's 40% after four; the older head (group 0) then wins.
    assert_eq!(&groups_of(&c, &o)[..6], [1, 1, 1, 1, 0, 1]);
}

#[test]
fn a_task_over_quota_is_left_out_and_smaller_ones_behind_it_still_go() {
    let mut c = cands(&[(0, res(2000, 1))], 1);
    c.extend(cands(&[(0, res(500, 1))], 2));
    let capped = Group {
        used: Usage {
            reserved: res(200, 1),
            running: 1,
        },
        quota: Quota {
            cpu_millis: Some(1500),
            running: Some(2),
            ..Quota::default()
        },
    };
    let o = order(&c, &[capped], &TOTAL, true);
    // The 2-CPU task passes the CPU limit; the first 0.5-CPU one fits; the second would
    // be a third running task.
    assert_eq!(o.order, [1]);
    let left: Vec<(usize, &str)> = o.over_quota.iter().map(|(i, e)| (*i, e.resource)).collect();
    assert_eq!(left, [(0, "cpu"), (2, "running")]);
    assert_eq!(o.over_quota[0].1.limit, 1500);
    assert_eq!(o.over_quota[0].1.would_hold, 2200);
}

#[test]
fn a_share_of_nothing_offered_is_zero() {
    assert_eq!(dominant_share(&res(1000, 1), &Resources::default()), 0.0);
    let gpus = Resources {
        gpus: 1,
        ..Resources::default()
    };
    let total = Resources { gpus: 4, ..TOTAL };
    assert_eq!(dominant_share(&gpus, &total), 0.25);
}

/// Any mix: every candidate comes out exactly once (ordered or left out), each group's
/// own order is kept, priorities never go down among those ordered, and what is ordered
/// never takes a group past its quota.
#[test]
fn order_is_a_permutation_that_keeps_each_groups_order_and_the_quotas() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    for _ in 0..300 {
        let k = 1 + rand(4) as usize;
        let mut c = Vec::new();
        let mut per_group: Vec<Vec<Candidate>> = vec![Vec::new(); k];
        for _ in 0..rand(40) {
            let g = rand(k as u64) as usize;
            let cand = Candidate {
                id: TaskId::new(),
                priority: rand(3) as i32,
                request: res(100 * (1 + rand(20)), 1 + rand(8)),
                group: g,
            };
            per_group[g].push(cand);
        }
        // Each group's list in dispatch order (priority, then age), interleaved.
        for l in &mut per_group {
            l.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
        }
        let mut cursors = vec![0; k];
        while cursors.iter().zip(&per_group).any(|(i, l)| *i < l.len()) {
            let g = rand(k as u64) as usize;
            if cursors[g] < per_group[g].len() {
                c.push(per_group[g][cursors[g]]);
                cursors[g] += 1;
            }
        }
        let groups: Vec<Group> = (0..k)
            .map(|_| Group {
                used: Usage::default(),
                quota: Quota {
                    cpu_millis: (rand(2) == 0).then(|| 1000 * (1 + rand(10))),
                    running: (rand(2) == 0).then(|| 1 + rand(10) as u32),
                    ..Quota::default()
                },
            })
            .collect();
        let o = order(&c, &groups, &TOTAL, rand(2) == 0);
        let mut seen: Vec<usize> = o.order.clone();
        seen.extend(o.over_quota.iter().map(|(i, _)| *i));
        seen.sort_unstable();
        assert_eq!(seen, (0..c.len()).collect::<Vec<_>>());
        let mut last = vec![None::<TaskId>; k];
        let mut used = vec![Usage::default(); k];
        for &i in &o.order {
            let g = c[i].group;
            used[g] = used[g].plus(&c[i].request);
            if let Some(limit) = groups[g].quota.running {
                assert!(used[g].running <= limit);
            }
            if let Some(limit) = groups[g].quota.cpu_millis {
                assert!(used[g].reserved.cpu_millis <= limit);
            }
        }
        for w in o.order.windows(2) {
            assert!(c[w[0]].priority >= c[w[1]].priority, "priority first");
        }
        // Each group's ordered tasks keep their own order.
        for &i in &o.order {
            let g = c[i].group;
            if let Some(prev) = last[g] {
                let pos = |id: TaskId| per_group[g].iter().position(|t| t.id == id).unwrap();
                assert!(pos(prev) < pos(c[i].id));
            }
            last[g] = Some(c[i].id);
        }
    }
}
