//! The results table: one [`Row`] per figure (cloudai, peer, ratio, target, met or not),
//! rendered as a Markdown table so the same text goes to the terminal and BENCHMARKS.md.

use serde::Serialize;

use crate::stats::Summary;

/// What a figure must reach.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Target {
    /// cloudai's median is at least this.
    AtLeast(f64),
    /// cloudai's median is at most this.
    AtMost(f64),
    /// cloudai / peer is at least this (higher is better, e.g. throughput).
    RatioAtLeast(f64),
    /// cloudai / peer is at most this (lower is better, e.g. time).
    RatioAtMost(f64),
    /// cloudai's median is at most this and below the peer's.
    AtMostAndBelowPeer(f64),
    /// Informational: no target.
    None,
}

/// One line of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What was measured, with its unit, e.g. "drain, sqlite (tasks/s)".
    pub figure: String,
    /// cloudai's repetitions.
    pub cloudai: Summary,
    /// The peer's repetitions, when the figure has a peer.
    pub peer: Option<Summary>,
    /// What cloudai must reach.
    pub target: Target,
    /// Anything the reader must know to read the figure (e.g. "correctness-grade").
    pub note: String,
}

impl Row {
    /// cloudai's median over the peer's, when there is a peer with a non-zero median.
    pub fn ratio(&self) -> Option<f64> {
        let peer = self.peer.as_ref()?;
        (peer.median != 0.0).then(|| self.cloudai.median / peer.median)
    }

    /// Whether the target is met; `None` when it cannot be judged (no target, or a ratio
    /// target without a peer figure).
    pub fn met(&self) -> Option<bool> {
        let v = self.cloudai.median;
        match self.target {
            Target::AtLeast(t) => Some(v >= t),
            Target::AtMost(t) => Some(v <= t),
            Target::RatioAtLeast(t) => self.ratio().map(|r| r >= t),
            Target::RatioAtMost(t) => self.ratio().map(|r| r <= t),
            Target::AtMostAndBelowPeer(t) => {
                let peer = self.peer.as_ref()?;
                Some(v <= t && v < peer.median)
            }
            Target::None => None,
        }
    }
}

/// A number with at most 4 significant digits, without trailing noise.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// "median (min–max, n=3)".
pub fn summary(s: &Summary) -> String {
    if s.n <= 1 {
        format!("{} (n=1)", num(s.median))
    } else {
        format!(
            "{} ({}–{}, n={})",
            num(s.median),
            num(s.min),
            num(s.max),
            s.n
        )
    }
}

/// The target as a reader should see it.
pub fn target(t: &Target) -> String {
    match t {
        Target::AtLeast(v) => format!("≥ {}", num(*v)),
        Target::AtMost(v) => format!("≤ {}", num(*v)),
        Target::RatioAtLeast(v) => format!("ratio ≥ {}", num(*v)),
        Target::RatioAtMost(v) => format!("ratio ≤ {}", num(*v)),
        Target::AtMostAndBelowPeer(v) => format!("≤ {} and < peer", num(*v)),
        Target::None => "—".into(),
    }
}

/// The whole table as Markdown, one row per figure, notes as footnotes below.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| figure | cloudai: median (min–max, n) | peer | ratio | target | met |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut notes = Vec::new();
    for r in rows {
        let mut figure = r.figure.clone();
        if !r.note.is_empty() {
            notes.push(r.note.clone());
            figure.push_str(&format!(" [{}]", notes.len()));
        }
        let met = match r.met() {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "—",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            figure,
            summary(&r.cloudai),
            r.peer.as_ref().map(summary).unwrap_or_else(|| "—".into()),
            r.ratio()
                .map(|x| format!("{}×", num(x)))
                .unwrap_or_else(|| "—".into()),
            target(&r.target),
            met
        ));
    }
    for (i, n) in notes.iter().enumerate() {
        out.push_str(&format!("\n- [{}] {}", i + 1, n));
    }
    if !notes.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: f64, peer: Option<f64>, target: Target) -> Row {
        Row {
            figure: "f".into(),
            cloudai: Summary::of(&[v]).unwrap(),
            peer: peer.map(|p| Summary::of(&[p]).unwrap()),
            target,
            note: String::new(),
        }
    }

    #[test]
    fn targets_are_judged_on_the_median_and_ratio() {
        assert_eq!(row(20.0, None, Target::AtLeast(20.0)).met(), Some(true));
        assert_eq!(row(19.0, None, Target::AtLeast(20.0)).met(), Some(false));
        assert_eq!(row(2.0, None, Target::AtMost(2.0)).met(), Some(true));
        assert_eq!(
            row(100.0, Some(10.0), Target::RatioAtLeast(10.0)).met(),
            Some(true)
        );
        assert_eq!(row(100.0, None, Target::RatioAtLeast(10.0)).met(), None);
        assert_eq!(
            row(9.0, Some(10.0), Target::RatioAtMost(1.0)).met(),
            Some(true)
        );
        assert_eq!(
            row(1.5, Some(1.0), Target::AtMostAndBelowPeer(2.0)).met(),
            Some(false)
        );
        assert_eq!(
            row(1.5, Some(3.0), Target::AtMostAndBelowPeer(2.0)).met(),
            Some(true)
        );
        assert_eq!(row(1.0, Some(0.0), Target::None).ratio(), None);
        assert_eq!(row(1.0, None, Target::None).met(), None);
    }

    #[test]
    fn renders_a_markdown_table_with_notes() {
        let mut r = row(25000.0, Some(2500.0), Target::RatioAtLeast(10.0));
        r.note = "a note".into();
        let t = render(&[r]);
        assert!(t.contains("| f [1] | 25000 (n=1) | 2500 (n=1) | 10.00× | ratio ≥ 10.00 | met |"));
        assert!(t.ends_with("\n- [1] a note\n"));
    }

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(num(12345.6), "12346");
        assert_eq!(num(123.45), "123.5");
        assert_eq!(num(1.23456), "1.235");
        assert_eq!(num(0.0), "0");
    }
}
