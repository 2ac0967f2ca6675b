//! Workflow files (`cloudai submit flow.yaml`, format in `cli/WORKFLOWS.md`): parsed and
//! checked whole before anything is enqueued (schema and units, unknown and cyclic
//! `needs`), every error naming the file's line. The result is the steps in dependency
//! order, each a task spec and the earlier steps it runs after. Pure: no IO but the text.

use std::collections::{BTreeMap, BTreeSet};

use cloudai_queue::validate::validate_spec;
use cloudai_queue::{DependencyCondition, TaskSpec};
use serde::Deserialize;

use crate::units::{parse_cpu, parse_duration, parse_memory};

/// A checked workflow: its steps, parents before children.
#[derive(Debug)]
pub struct Flow {
    /// The file's `name`, if any.
    pub name: Option<String>,
    /// Every step, in an order where each comes after the steps it needs.
    pub steps: Vec<Step>,
}

/// One step.
#[derive(Debug)]
pub struct Step {
    /// Its name in the file.
    pub name: String,
    /// What it runs.
    pub spec: TaskSpec,
    /// The steps it runs after, each with its condition.
    pub needs: Vec<(String, DependencyCondition)>,
    /// How many steps lie above it on its longest chain (0: it needs none).
    pub depth: usize,
}

/// What is wrong with a file, and where.
#[derive(Debug, PartialEq, Eq)]
pub struct FlowError {
    /// The 1-based line, when one can be named.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl FlowError {
    fn at(line: Option<usize>, message: impl Into<String>) -> Self {
        FlowError {
            line,
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    name: Option<String>,
    steps: StepMap,
}

/// The `steps` mapping in file order, refusing a name given twice (a map would keep the
/// last one without a word).
struct StepMap(Vec<(String, StepDoc)>);

impl<'de> Deserialize<'de> for StepMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = StepMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of step names to steps")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<StepMap, A::Error> {
                let mut out: Vec<(String, StepDoc)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, StepDoc>()? {
                    if out.iter().any(|(n, _)| *n == k) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate step {k:?}: each name once"
                        )));
                    }
                    out.push((k, v));
                }
                Ok(StepMap(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// A number or a string (`cpu: 0.5`, `cpu: 500m`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Number(f64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Number(n) => n.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDoc {
    image: String,
    #[serde(default)]
    command: Vec<String>,
    entrypoint: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cpu: Option<Scalar>,
    memory: Option<Scalar>,
    #[serde(default)]
    gpus: u32,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    retries: u32,
    timeout: Option<String>,
    worker: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// `other` or `other:notok`.
    #[serde(default)]
    needs: Vec<String>,
    /// The condition of each `needs` entry that names none (default `ok`).
    condition: Option<String>,
}

/// Parses and checks `text`.
pub fn parse(text: &str) -> Result<Flow, FlowError> {
    let doc: FileDoc = serde_norway::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        FlowError::at(line, e.to_string())
    })?;
    if doc.steps.0.is_empty() {
        return Err(FlowError::at(None, "the workflow has no steps"));
    }
    let line = |name: &str| step_line(text, name);
    let mut steps = BTreeMap::new();
    for (name, s) in doc.steps.0 {
        let at = line(&name);
        if name.trim().is_empty() || name.contains(char::is_whitespace) {
            return Err(FlowError::at(
                at,
                format!("step name {name:?} must be one word"),
            ));
        }
        let default = match &s.condition {
            None => DependencyCondition::Ok,
            Some(c) => c
                .parse()
                .map_err(|e| FlowError::at(at, format!("step {name}: {e}")))?,
        };
        let mut needs = Vec::new();
        for n in &s.needs {
            let (parent, cond) = match n.rsplit_once(':') {
                Some((p, c)) => (
                    p.trim().to_string(),
                    c.parse()
                        .map_err(|e| FlowError::at(at, format!("step {name}: {e}")))?,
                ),
                None => (n.trim().to_string(), default),
            };
            needs.push((parent, cond));
        }
        let spec = spec_of(&name, &s).map_err(|m| FlowError::at(at, m))?;
        steps.insert(name, (spec, needs));
    }
    for (name, (_, needs)) in &steps {
        for (parent, _) in needs {
            if !steps.contains_key(parent) {
                return Err(FlowError::at(
                    line(name),
                    format!("step {name} needs {parent:?}, which is not a step of this file"),
                ));
            }
            if parent == name {
                return Err(FlowError::at(
                    line(name),
                    format!("step {name} needs itself"),
                ));
            }
        }
    }
    let order = order(&steps).map_err(|cycle| {
        FlowError::at(
            line(&cycle[0]),
            format!("steps {} need each other in a cycle", cycle.join(", ")),
        )
    })?;
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for name in order {
        let (spec, needs) = steps.remove(&name).expect("ordered steps exist");
        let d = needs.iter().map(|(p, _)| depth[p] + 1).max().unwrap_or(0);
        depth.insert(name.clone(), d);
        out.push(Step {
            name,
            spec,
            needs,
            depth: d,
        });
    }
    Ok(Flow {
        name: doc.name,
        steps: out,
    })
}

type Steps = BTreeMap<String, (TaskSpec, Vec<(String, DependencyCondition)>)>;

/// Kahn's order (ties by name, so it is stable), or the steps left in a cycle.
fn order(steps: &Steps) -> Result<Vec<String>, Vec<String>> {
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> = steps
        .iter()
        .map(|(n, (_, needs))| (n.as_str(), needs.iter().map(|(p, _)| p.as_str()).collect()))
        .collect();
    let mut out = Vec::new();
    while !waiting.is_empty() {
        let ready: Vec<&str> = waiting
            .iter()
            .filter(|(_, needs)| needs.is_empty())
            .map(|(n, _)| *n)
            .collect();
        if ready.is_empty() {
            return Err(waiting.keys().map(|s| s.to_string()).collect());
        }
        for n in ready {
            waiting.remove(n);
            for needs in waiting.values_mut() {
                needs.remove(n);
            }
            out.push(n.to_string());
        }
    }
    Ok(out)
}

fn spec_of(name: &str, s: &StepDoc) -> Result<TaskSpec, String> {
    let bad = |what: &str, e: crate::units::UnitError| format!("step {name}: {what}: {}", e.0);
    let mut spec = TaskSpec::new(s.image.clone());
    spec.command = s.command.clone();
    spec.entrypoint = s.entrypoint.iter().cloned().collect();
    spec.env = s.env.clone();
    if let Some(c) = &s.cpu {
        spec.resources.cpu_millis = parse_cpu(&c.text()).map_err(|e| bad("cpu", e))?;
    }
    if let Some(m) = &s.memory {
        spec.resources.memory_bytes = parse_memory(&m.text()).map_err(|e| bad("memory", e))?;
    }
    spec.resources.gpus = s.gpus;
    spec.priority = s.priority;
    spec.max_attempts = s
        .retries
        .checked_add(1)
        .ok_or_else(|| format!("step {name}: retries is too large"))?;
    if let Some(t) = &s.timeout {
        spec.timeout = Some(parse_duration(t).map_err(|e| bad("timeout", e))?);
    }
    spec.pinned_worker = s.worker.clone();
    spec.labels = s.labels.clone();
    validate_spec(&spec).map_err(|e| format!("step {name}: {e}"))?;
    Ok(spec)
}

/// The line where step `name` is defined (`  name:` under `steps:`), if it can be found.
fn step_line(text: &str, name: &str) -> Option<usize> {
    let mut in_steps = false;
    for (i, l) in text.lines().enumerate() {
        if l.trim_end() == "steps:" {
            in_steps = true;
            continue;
        }
        if in_steps && l.starts_with(char::is_whitespace) {
            let key = l.trim().trim_matches(|c| c == '"' || c == '\'');
            if key.strip_suffix(':') == Some(name) || key.starts_with(&format!("{name}:")) {
                return Some(i + 1);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIAMOND: &str = "\
name: nightly
steps:
  test:
    image: cloudai/busybox:test
    command: [echo, test]
    needs: [build]
  build:
    image: cloudai/busybox:test
    command: [sh, -c, 'echo build']
    cpu: 0.5
    memory: 64M
    retries: 2
    timeout: 10m
    labels: {team: ml}
  report:
    image: cloudai/busybox:test
    needs: ['test:any', lint]
  lint:
    image: cloudai/busybox:test
    needs: [build]
    condition: notok
";

    #[test]
    fn a_diamond_comes_out_in_dependency_order_with_its_specs() {
        let f = parse(DIAMOND).unwrap();
        assert_eq!(f.name.as_deref(), Some("nightly"));
        let names: Vec<&str> = f.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["build", "lint", "test", "report"]);
        let depth: Vec<usize> = f.steps.iter().map(|s| s.depth).collect();
        assert_eq!(depth, [0, 1, 1, 2]);
        let build = &f.steps[0].spec;
        assert_eq!(
            (build.resources.cpu_millis, build.resources.memory_bytes),
            (500, 64 << 20)
        );
        assert_eq!(build.max_attempts, 3);
        assert_eq!(build.timeout, Some(std::time::Duration::from_secs(600)));
        assert_eq!(
            f.steps[1].needs,
            vec![("build".to_string(), DependencyCondition::NotOk)]
        );
        assert_eq!(
            f.steps[3].needs,
            vec![
                ("test".to_string(), DependencyCondition::Any),
                ("lint".to_string(), DependencyCondition::Ok)
            ]
        );
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let unknown = DIAMOND.replace("needs: [build]\n  build", "needs: [biuld]\n  build");
        let e = parse(&unknown).unwrap_err();
        assert_eq!(e.line, Some(3), "{e:?}");
        assert!(e.message.contains("\"biuld\""), "{e:?}");

        let cycle = DIAMOND.replace("    retries: 2", "    retries: 2\n    needs: [report]");
        let e = parse(&cycle).unwrap_err();
        assert!(e.message.contains("cycle"), "{e:?}");
        assert!(
            e.message.contains("build") && e.message.contains("report"),
            "{e:?}"
        );

        let typo = DIAMOND.replace("    cpu: 0.5", "    cpus: 0.5");
        let e = parse(&typo).unwrap_err();
        assert_eq!(e.line, Some(10), "{e:?}");
        assert!(e.message.contains("cpus"), "{e:?}");

        let unit = DIAMOND.replace("memory: 64M", "memory: lots");
        let e = parse(&unit).unwrap_err();
        assert_eq!(e.line, Some(7), "the step's line: {e:?}");
        assert!(e.message.contains("step build: memory"), "{e:?}");

        let cond = DIAMOND.replace("condition: notok", "condition: maybe");
        assert!(parse(&cond).unwrap_err().message.contains("maybe"));
        let image = DIAMOND.replace(
            "image: cloudai/busybox:test\n    command: [echo",
            "image: 'Bad Image'\n    command: [echo",
        );
        assert!(parse(&image).unwrap_err().message.contains("step test"));
        assert!(parse("steps: {}\n")
            .unwrap_err()
            .message
            .contains("no steps"));
        let e = parse("steps:\n  a:\n    image: x\n  a:\n    image: y\n").unwrap_err();
        assert!(e.message.contains("duplicate"), "{e:?}");
    }
}
