//! Job arrays (`cloudai enqueue --array 0-99%8`): one spec run once per index, as
//! ordinary tasks enqueued in one store write. Each element carries [`ArrayMember`] in
//! its spec, `CLOUDAI_ARRAY_INDEX` and `CLOUDAI_ARRAY_ID` in its env and the
//! `cloudai.array` label; an array with a cap (`%8`) enqueues its elements `waiting`, and
//! the leader releases them as slots free (`deps::fill_array`), so the dispatcher's reads
//! never hold a capped element.
//!
//! [`ArraySpec`] is the index expression, parsed here for the CLI and the master alike:
//! `ITEM[,ITEM…][%CAP]`, where an ITEM is `N`, `N-M` or `N-M:STEP`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{QueueError, Result};
use crate::model::{Enqueued, NewTask, Task, TaskId, TaskSpec};

/// Most elements one array may have.
pub const MAX_ARRAY_SIZE: usize = 100_000;
/// The element's index, in its env.
pub const INDEX_ENV: &str = "CLOUDAI_ARRAY_INDEX";
/// The array's id, in each element's env.
pub const ID_ENV: &str = "CLOUDAI_ARRAY_ID";
/// The label every element carries, with the array's id.
pub const LABEL: &str = "cloudai.array";

/// What makes a task an element of an array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayMember {
    /// The array's id (a UUID, shared by its elements).
    pub id: String,
    /// This element's index.
    pub index: u32,
    /// Elements in the array.
    pub size: u32,
    /// Most elements queued or running at once; 0: no cap.
    #[serde(default)]
    pub max_running: u32,
}

/// An index expression: which indices, and the cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArraySpec {
    /// Every index, in the order given (no index twice).
    pub indices: Vec<u32>,
    /// `%CAP`; 0 when none was given.
    pub max_running: u32,
}

fn bad(reason: impl Into<String>) -> QueueError {
    QueueError::invalid("array", reason)
}

fn number(s: &str, what: &str) -> Result<u32> {
    let s = s.trim();
    s.parse().map_err(|_| {
        bad(format!(
            "{what} {s:?} is not a whole number from 0 to {}",
            u32::MAX
        ))
    })
}

/// One item's indices: `N`, `N-M` or `N-M:STEP`, as (first, last, step).
fn item(s: &str) -> Result<(u32, u32, u32)> {
    let (range, step) = match s.split_once(':') {
        Some((r, st)) => (r, number(st, "step")?),
        None => (s, 1),
    };
    if step == 0 {
        return Err(bad(format!("step of {s:?} is 0")));
    }
    let (first, last) = match range.split_once('-') {
        Some((a, b)) => (number(a, "index")?, number(b, "index")?),
        None if step != 1 => return Err(bad(format!("{s:?} has a step but no range (N-M:STEP)"))),
        None => {
            let n = number(range, "index")?;
            (n, n)
        }
    };
    if first > last {
        return Err(bad(format!("range {range:?} ends before it starts")));
    }
    Ok((first, last, step))
}

impl FromStr for ArraySpec {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<ArraySpec> {
        let (list, cap) = match s.split_once('%') {
            Some((l, c)) => (l, Some(number(c, "cap")?)),
            None => (s, None),
        };
        if cap == Some(0) {
            return Err(bad(
                "a cap of %0 would run nothing; leave it out for no cap",
            ));
        }
        if list.trim().is_empty() {
            return Err(bad("no indices (write e.g. 0-99, 1,3,5 or 1-99:2)"));
        }
        let items = list.split(',').map(item).collect::<Result<Vec<_>>>()?;
        // Counted before expanding, so that 0-4000000000 is refused without the memory.
        let size: u64 = items
            .iter()
            .map(|&(a, b, st)| u64::from((b - a) / st) + 1)
            .sum();
        if size > MAX_ARRAY_SIZE as u64 {
            return Err(bad(format!(
                "{size} indices is more than the limit of {MAX_ARRAY_SIZE}"
            )));
        }
        let mut indices = Vec::with_capacity(size as usize);
        for (a, b, st) in items {
            indices.extend((a..=b).step_by(st as usize));
        }
        let mut seen = indices.clone();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("index {} is given twice", w[0])));
        }
        Ok(ArraySpec {
            indices,
            max_running: cap.unwrap_or(0),
        })
    }
}

impl fmt::Display for ArraySpec {
    /// The indices as runs (`0-9,20-28:2`), then the cap.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut i = 0;
        let ix = &self.indices;
        while i < ix.len() {
            let step = ix.get(i + 1).and_then(|n| n.checked_sub(ix[i]));
            let mut j = i;
            if let Some(st) = step.filter(|&st| st > 0) {
                while j + 1 < ix.len() && ix[j + 1].checked_sub(ix[j]) == Some(st) {
                    j += 1;
                }
                // Two indices make no run worth a range.
                if j == i + 1 {
                    j = i;
                }
                match (j > i, st) {
                    (false, _) => parts.push(ix[i].to_string()),
                    (true, 1) => parts.push(format!("{}-{}", ix[i], ix[j])),
                    (true, st) => parts.push(format!("{}-{}:{st}", ix[i], ix[j])),
                }
            } else {
                parts.push(ix[i].to_string());
            }
            i = j + 1;
        }
        write!(f, "{}", parts.join(","))?;
        if self.max_running > 0 {
            write!(f, "%{}", self.max_running)?;
        }
        Ok(())
    }
}

/// A fresh array's id; with an idempotency key, the same id each time (so that the
/// elements of a repeated enqueue equal the stored ones and are returned, not doubled).
pub fn array_id(key: Option<&str>) -> String {
    match key {
        Some(k) => Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("cloudai.array/{k}").as_bytes(),
        ),
        None => Uuid::now_v7(),
    }
    .to_string()
}

/// The elements of `array` over `spec`, in index order: each with its member record,
/// env and label, and the idempotency key `KEY[INDEX]` when the spec has a key.
pub fn elements(
    spec: &TaskSpec,
    array: &ArraySpec,
    submitted_by: Option<String>,
) -> Result<(String, Vec<NewTask>)> {
    let els = Elements::new(spec.clone(), array.clone(), submitted_by)?;
    Ok((els.id().to_string(), els.collect()))
}

/// [`elements`] made one at a time, so a store can write each as it is made and never
/// hold the whole array (100,000 specs) at once.
#[derive(Clone, Debug)]
pub struct Elements {
    spec: TaskSpec,
    array: ArraySpec,
    submitted_by: Option<String>,
    id: String,
    next: usize,
}

impl Elements {
    /// The elements of `array` over `spec`; refused when `spec` is itself an element.
    pub fn new(spec: TaskSpec, array: ArraySpec, submitted_by: Option<String>) -> Result<Self> {
        if spec.array.is_some() {
            return Err(bad("the spec is already an array element"));
        }
        let id = array_id(spec.idempotency_key.as_deref());
        Ok(Elements {
            spec,
            array,
            submitted_by,
            id,
            next: 0,
        })
    }

    /// The array's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn element(&self, index: u32) -> NewTask {
        let id = &self.id;
        let mut s = self.spec.clone();
        s.env.insert(INDEX_ENV.into(), index.to_string());
        s.env.insert(ID_ENV.into(), id.clone());
        s.labels.insert(LABEL.into(), id.clone());
        s.idempotency_key = self
            .spec
            .idempotency_key
            .as_ref()
            .map(|k| format!("{k}[{index}]"));
        s.array = Some(ArrayMember {
            id: id.clone(),
            index,
            size: self.array.indices.len() as u32,
            max_running: self.array.max_running,
        });
        NewTask {
            spec: s,
            submitted_by: self.submitted_by.clone(),
        }
    }
}

impl Iterator for Elements {
    type Item = NewTask;

    fn next(&mut self) -> Option<NewTask> {
        let index = *self.array.indices.get(self.next)?;
        self.next += 1;
        Some(self.element(index))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.array.indices.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Elements {}

/// What one array's enqueue made ([`crate::store::TaskStore::enqueue_array`]): counts and
/// samples, not the elements, which the store wrote without holding them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayEnqueued {
    /// The array's id.
    pub id: String,
    /// Elements this call created (fewer than the array's size when an idempotency key
    /// matched stored ones; then those are returned, not doubled).
    pub created: usize,
    /// The first element's id (created or matched); `None` for no element.
    pub first: Option<TaskId>,
    /// One created element per status the elements were made in (`queued`, `waiting`):
    /// they share spec, submitter and start time, so one stands for all of its status.
    pub samples: Vec<Task>,
}

impl ArrayEnqueued {
    /// Nothing made yet.
    pub fn new(id: impl Into<String>) -> Self {
        ArrayEnqueued {
            id: id.into(),
            created: 0,
            first: None,
            samples: Vec::new(),
        }
    }

    /// Counts one element's enqueue.
    pub fn add(&mut self, e: Enqueued) {
        self.first.get_or_insert(e.task.id);
        if e.created {
            self.created += 1;
            if self.samples.iter().all(|t| t.status != e.task.status) {
                self.samples.push(e.task);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ArraySpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn refused(s: &str) -> String {
        match s.parse::<ArraySpec>() {
            Ok(a) => panic!("{s} was accepted as {a:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn forms_expand_in_order() {
        assert_eq!(parse("0-4").indices, vec![0, 1, 2, 3, 4]);
        assert_eq!(parse("1,3,5").indices, vec![1, 3, 5]);
        assert_eq!(parse("1-9:4").indices, vec![1, 5, 9]);
        assert_eq!(parse("1-10:4").indices, vec![1, 5, 9]);
        let a = parse("7, 0-2 ,20-24:2%3");
        assert_eq!(a.indices, vec![7, 0, 1, 2, 20, 22, 24]);
        assert_eq!(a.max_running, 3);
        assert_eq!(parse("5").max_running, 0);
        assert_eq!(parse("0-99%8").indices.len(), 100);
        assert_eq!(
            parse(&format!("0-{}", MAX_ARRAY_SIZE - 1)).indices.len(),
            MAX_ARRAY_SIZE
        );
        assert_eq!(parse("4294967295").indices, vec![u32::MAX]);
    }

    #[test]
    fn bad_expressions_name_the_problem() {
        assert!(refused("").contains("no indices"));
        assert!(refused("%4").contains("no indices"));
        assert!(refused("5-1").contains("ends before it starts"));
        assert!(refused("1-9:0").contains("step"));
        assert!(refused("3:2").contains("no range"));
        assert!(refused("a-b").contains("\"a\" is not a whole number"));
        assert!(refused("-1").contains("not a whole number"));
        assert!(refused("0-9%0").contains("%0"));
        assert!(refused("0-9%x").contains("cap"));
        assert!(refused("1,2,1").contains("index 1 is given twice"));
        assert!(refused("0-9,5").contains("index 5 is given twice"));
        assert!(refused(&format!("0-{MAX_ARRAY_SIZE}")).contains("limit of 100000"));
        // Refused by counting, before any index is made.
        assert!(refused("0-4294967295").contains("4294967296 indices"));
        assert!(refused("0-9,,12").contains("not a whole number"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "0-99%8",
            "1,3,5",
            "1-99:2",
            "7,0-2,20-24:2%3",
            "0,1",
            "5",
            "9,8,7,6",
        ] {
            let a = parse(s);
            assert_eq!(parse(&a.to_string()), a, "{s} shown as {a}");
        }
        assert_eq!(parse("0-99%8").to_string(), "0-99%8");
        assert_eq!(parse("1,3,5").to_string(), "1-5:2");
        assert_eq!(parse("0,1").to_string(), "0,1");
    }

    #[test]
    fn elements_carry_index_id_label_and_key() {
        let mut spec = TaskSpec::new("busybox");
        spec.idempotency_key = Some("nightly".into());
        let (id, tasks) = elements(&spec, &parse("3,5%1"), Some("ann".into())).unwrap();
        assert_eq!(tasks.len(), 2);
        let t = &tasks[1].spec;
        assert_eq!(t.env[INDEX_ENV], "5");
        assert_eq!(t.env[ID_ENV], id);
        assert_eq!(t.labels[LABEL], id);
        assert_eq!(t.idempotency_key.as_deref(), Some("nightly[5]"));
        assert_eq!(
            t.array,
            Some(ArrayMember {
                id: id.clone(),
                index: 5,
                size: 2,
                max_running: 1
            })
        );
        assert_eq!(tasks[0].submitted_by.as_deref(), Some("ann"));
        // A key gives the same id again; no key, a new one each time.
        assert_eq!(elements(&spec, &parse("3,5%1"), None).unwrap().0, id);
        spec.idempotency_key = None;
        let a = elements(&spec, &parse("1"), None).unwrap();
        let b = elements(&spec, &parse("1"), None).unwrap();
        assert_ne!(a.0, b.0);
        assert_eq!(a.1[0].spec.idempotency_key, None);
        // An element cannot become an array of its own.
        assert!(elements(&a.1[0].spec, &parse("1"), None).is_err());
    }
}
