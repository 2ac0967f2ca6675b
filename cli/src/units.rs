//! Human units on the command line: memory sizes (`256M`, `1.5GiB`), durations (`30s`,
//! `1h30m`, `250ms`), CPU (`0.5`, `500m`), `KEY=VALUE` pairs; and the short forms used
//! in tables (`3m ago`, `512MiB`). Pure functions, no IO.

use std::time::Duration;

/// A value that does not parse. The message names the value and the accepted syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError(pub String);

impl std::fmt::Display for UnitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnitError {}

/// Parses a memory size: a number with an optional unit. `K`, `M`, `G`, `T` (and `KiB`,
/// `MiB`, ... or `Ki`, `Mi`, ...) are powers of 1024, as Docker reads them; `KB`, `MB`,
/// `GB`, `TB` are powers of 1000; no unit or `B` means bytes. Case-insensitive.
pub fn parse_memory(s: &str) -> Result<u64, UnitError> {
    let err = || {
        UnitError(format!(
            "invalid memory size {s:?}: expected a number with an optional unit, e.g. 512M, 1.5G, 256MiB, 1000000"
        ))
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num.starts_with('.') && num.len() == 1 {
        return Err(err());
    }
    let value: f64 = num.parse().map_err(|_| err())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(err()),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(UnitError(format!("invalid memory size {s:?}: too large")));
    }
    if bytes.fract() != 0.0 {
        return Err(UnitError(format!(
            "invalid memory size {s:?}: not a whole number of bytes"
        )));
    }
    Ok(bytes as u64)
}

/// Parses a duration: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`, `d`
/// (`30s`, `1h30m`, `1.5h`, `250ms`). A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let err = || {
        UnitError(format!(
            "invalid duration {s:?}: expected e.g. 30s, 5m, 1h30m, 250ms, 2d (a bare number is seconds)"
        ))
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return secs_to_duration(secs).ok_or_else(err);
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if n == 0 {
            return Err(err());
        }
        let value: f64 = rest[..n].parse().map_err(|_| err())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..u] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(err()),
        };
        rest = &rest[u..];
        total += value * factor;
    }
    secs_to_duration(total).ok_or_else(err)
}

fn secs_to_duration(secs: f64) -> Option<Duration> {
    (secs.is_finite() && (0.0..1e12).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// Parses CPU: cores as a decimal (`0.5`, `2`) or millicores with `m` (`500m`).
pub fn parse_cpu(s: &str) -> Result<u64, UnitError> {
    let err = || {
        UnitError(format!(
            "invalid cpu {s:?}: expected cores (0.5, 2) or millicores (500m)"
        ))
    };
    let t = s.trim();
    let millis = if let Some(m) = t.strip_suffix('m') {
        m.parse::<u64>().map_err(|_| err())? as f64
    } else {
        t.parse::<f64>().map_err(|_| err())? * 1000.0
    };
    if !millis.is_finite() || millis < 0.0 || millis > u64::MAX as f64 {
        return Err(err());
    }
    Ok(millis.round() as u64)
}

/// Splits `KEY=VALUE` (the value may be empty or contain `=`).
pub fn parse_key_value(what: &str, s: &str) -> Result<(String, String), UnitError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(UnitError(format!(
            "invalid {what} {s:?}: expected KEY=VALUE"
        ))),
    }
}

/// Bytes in binary units, one decimal when not whole: `512MiB`, `1.5GiB`, `0B`.
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if v.fract() == 0.0 || i == 0 {
        format!("{}{}", v as u64, UNITS[i])
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// Millicores as cores: `0.5`, `2`, `1.25`.
pub fn format_cpu(millis: u64) -> String {
    if millis % 1000 == 0 {
        format!("{}", millis / 1000)
    } else {
        let s = format!("{:.3}", millis as f64 / 1000.0);
        s.trim_end_matches('0').to_string()
    }
}

/// A short duration as people read it: `850ms`, `42s`, `3m12s`, `2h05m`, `3d4h`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// How long ago, in whole units: `5s ago`, `3m ago`, `2h ago`, `4d ago`. Future times
/// (clock skew) read as `just now`.
pub fn format_age(elapsed_ms: i64) -> String {
    if elapsed_ms < 1000 {
        return "just now".to_string();
    }
    let s = elapsed_ms / 1000;
    match s {
        1..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("0").unwrap(), 0);
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert_eq!(parse_memory("100b").unwrap(), 100);
        assert_eq!(parse_memory("256M").unwrap(), 256 << 20);
        assert_eq!(parse_memory("256m").unwrap(), 256 << 20);
        assert_eq!(parse_memory("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_memory("256Mi").unwrap(), 256 << 20);
        assert_eq!(parse_memory("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_memory("2k").unwrap(), 2048);
        assert_eq!(parse_memory("1T").unwrap(), 1 << 40);
        assert_eq!(parse_memory("1MB").unwrap(), 1_000_000);
        assert_eq!(parse_memory("2GB").unwrap(), 2_000_000_000);
        for bad in ["", "M", "12XB", "-1M", "1..5G", "1.5", "abc", "1 M M", "."] {
            assert!(parse_memory(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_memory("12XB").unwrap_err().0.contains("12XB"));
        assert!(parse_memory("99999999T").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        for bad in ["", "s", "10x", "ten", "-5s", "1h-", "5 s", "m5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpu("0.5").unwrap(), 500);
        assert_eq!(parse_cpu("2").unwrap(), 2000);
        assert_eq!(parse_cpu("250m").unwrap(), 250);
        assert_eq!(parse_cpu("0.001").unwrap(), 1);
        for bad in ["", "x", "-1", "1.5m", "m"] {
            assert!(parse_cpu(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_value("env", "A=b=c").unwrap(),
            ("A".to_string(), "b=c".to_string())
        );
        assert_eq!(
            parse_key_value("env", "A=").unwrap(),
            ("A".to_string(), String::new())
        );
        assert!(parse_key_value("env", "A").is_err());
        assert!(parse_key_value("label", "=x").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(0), "0B");
        assert_eq!(format_bytes(512), "512B");
        assert_eq!(format_bytes(256 << 20), "256MiB");
        assert_eq!(format_bytes(3 << 29), "1.5GiB");
        assert_eq!(format_cpu(500), "0.5");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(1250), "1.25");
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_secs(42)), "42s");
        assert_eq!(format_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(format_duration(Duration::from_secs(7500)), "2h05m");
        assert_eq!(
            format_duration(Duration::from_secs(3 * 86400 + 4 * 3600)),
            "3d4h"
        );
        assert_eq!(format_age(-5), "just now");
        assert_eq!(format_age(5_000), "5s ago");
        assert_eq!(format_age(180_000), "3m ago");
        assert_eq!(format_age(7_200_000), "2h ago");
        assert_eq!(format_age(4 * 86_400_000), "4d ago");
    }
}
