//! Cron schedules on the master: the `*Schedule` calls of `ClientService` (any master:
//! they read and write the store alone) and the leader's duty that fires what is due
//! every second (`cloudai_queue::schedule` holds the rule and the exactly-once fire).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cloudai_proto::{convert, pb};
use cloudai_queue::schedule::{self, Overlap, Schedule, When};
use cloudai_queue::QueueError;
use tonic::{Request, Status};

use crate::client_service::ClientSvc;
use crate::error::status;
use crate::shared::Shared;

/// How often the leader looks for due schedules (ticks fall on whole seconds).
pub const FIRE_PERIOD: Duration = Duration::from_secs(1);
/// Compare-and-set tries of one pause or resume before it gives up.
const CAS_TRIES: usize = 5;

/// The leader's duty: fires due schedules every [`FIRE_PERIOD`] until shutdown.
pub async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(FIRE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.until_shutdown() => return,
            _ = tick.tick() => {}
        }
        match schedule::fire_due(shared.store.as_ref(), Utc::now()).await {
            Ok(fired) => {
                for f in fired {
                    match &f.task {
                        Some(t) => {
                            tracing::info!(schedule = %f.name, task_id = %t.id, tick = %f.fire.tick,
                                note = %f.fire.note, "schedule fired");
                            crate::workflow::enqueued(&shared, t);
                            shared.wake_dispatcher();
                        }
                        None => tracing::info!(schedule = %f.name, tick = %f.fire.tick,
                            note = %f.fire.note, "schedule fire skipped"),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not fire schedules; trying again in a second")
            }
        }
    }
}

fn wire(s: Schedule) -> pb::Schedule {
    pb::Schedule {
        name: s.name,
        cron: s.cron,
        timezone: s.tz,
        overlap: s.overlap.as_str().into(),
        spec: Some(s.spec.into()),
        paused: s.paused,
        next_at: s.next_at.map(convert::timestamp),
        created_at: Some(convert::timestamp(s.created_at)),
        created_by: s.created_by.unwrap_or_default(),
        last_task_id: s.last_task.map(|t| t.to_string()).unwrap_or_default(),
        history: s
            .history
            .into_iter()
            .map(|f| pb::ScheduleFire {
                tick: Some(convert::timestamp(f.tick)),
                fired_at: Some(convert::timestamp(f.at)),
                task_id: f.task.map(|t| t.to_string()).unwrap_or_default(),
                note: f.note,
            })
            .collect(),
    }
}

/// `AddSchedule`: checked whole, stored, its first time in the answer.
pub async fn add(
    svc: &ClientSvc,
    request: Request<pb::AddScheduleRequest>,
) -> Result<pb::Schedule, Status> {
    let created_by = crate::auth::submitter(&request);
    let r = request.into_inner();
    let overlap = match r.overlap.trim() {
        "" => Overlap::Skip,
        o => o.parse().map_err(status)?,
    };
    let tz = match r.timezone.trim() {
        "" => "UTC",
        tz => tz,
    };
    let spec = svc.spec(r.spec)?;
    svc.check_pinned(&[&spec]).await?;
    let s = schedule::new_schedule(&r.name, &r.cron, tz, overlap, spec, created_by, Utc::now())
        .map_err(status)?;
    svc.store_call("add_schedule", svc.shared.store.add_schedule(&s))
        .await?;
    tracing::info!(schedule = %s.name, cron = %s.cron, tz = %s.tz, "schedule added");
    Ok(wire(s))
}

async fn named(svc: &ClientSvc, name: &str) -> Result<Schedule, Status> {
    svc.store_call("get_schedule", svc.shared.store.get_schedule(name.trim()))
        .await?
        .ok_or_else(|| status(QueueError::NoSchedule(name.trim().to_string())))
}

/// `GetSchedule`.
pub async fn get(svc: &ClientSvc, name: &str) -> Result<pb::Schedule, Status> {
    named(svc, name).await.map(wire)
}

/// `ListSchedules`.
pub async fn list(svc: &ClientSvc) -> Result<pb::ListSchedulesResponse, Status> {
    let all = svc
        .store_call("list_schedules", svc.shared.store.list_schedules())
        .await?;
    Ok(pb::ListSchedulesResponse {
        schedules: all.into_iter().map(wire).collect(),
    })
}

/// `PauseSchedule` / `ResumeSchedule`: a resume fires next at the first time after now
/// (the times paused over are not made up).
pub async fn set_paused(svc: &ClientSvc, name: &str, paused: bool) -> Result<pb::Schedule, Status> {
    for _ in 0..CAS_TRIES {
        let s = named(svc, name).await?;
        if s.paused == paused {
            return Ok(wire(s));
        }
        let mut n = s.clone();
        n.paused = paused;
        n.version += 1;
        if !paused {
            let when = When::parse(&s.cron, &s.tz).map_err(status)?;
            n.next_at = when.next_after(Utc::now());
        }
        let store = &svc.shared.store;
        if svc
            .store_call("replace_schedule", store.replace_schedule(&n, s.version))
            .await?
        {
            tracing::info!(schedule = %n.name, paused, "schedule paused or resumed");
            return Ok(wire(n));
        }
    }
    Err(Status::aborted(format!(
        "schedule {name} kept changing (it fires often?); try again"
    )))
}

/// `RemoveSchedule`.
pub async fn remove(svc: &ClientSvc, name: &str) -> Result<pb::RemoveScheduleResponse, Status> {
    let gone = svc
        .store_call(
            "remove_schedule",
            svc.shared.store.remove_schedule(name.trim()),
        )
        .await?;
    if !gone {
        return Err(status(QueueError::NoSchedule(name.trim().to_string())));
    }
    tracing::info!(schedule = %name.trim(), "schedule removed");
    Ok(pb::RemoveScheduleResponse {})
}

/// `RunSchedule`.
pub async fn run_now(svc: &ClientSvc, name: &str) -> Result<pb::RunScheduleResponse, Status> {
    let fired = svc
        .store_call(
            "run_schedule",
            schedule::run_now(svc.shared.store.as_ref(), name.trim(), Utc::now()),
        )
        .await?;
    let task = fired
        .task
        .ok_or_else(|| Status::failed_precondition(fired.fire.note.clone()))?;
    crate::workflow::enqueued(&svc.shared, &task);
    svc.shared.wake_dispatcher();
    Ok(pb::RunScheduleResponse {
        task_id: task.id.to_string(),
    })
}
