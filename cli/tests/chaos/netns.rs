//! Hosts that can be cut off for real: a network namespace joined to the root namespace by
//! veth pairs, each link cut with `ip link set ... down` (packets stop; no socket is told,
//! exactly as a pulled cable or a partition). Needs root, as CI has.

// Shared by the partition tests; each uses a part of it.
#![allow(dead_code)]

use std::process::{Command, Stdio};

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip runs");
    assert!(st.success(), "ip {} failed", args.join(" "));
}

/// Best-effort clean-up: a missing link or namespace is not worth a line on stderr.
fn quiet_ip(args: &[&str]) {
    let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
}

/// True when running as root (what `ip netns` needs).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// One veth pair: `host_if` (address `host_ip`) in the root namespace, `ns_if` (address
/// `ns_ip`) in the namespace, on a /30 of their own.
#[derive(Clone, Debug)]
pub struct Link {
    pub host_if: String,
    pub host_ip: String,
    pub ns_ip: String,
}

impl Link {
    /// Cuts (or restores) the link.
    pub fn set(&self, up: bool) {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }]);
    }
}

/// A network namespace, removed (with its links) on drop.
pub struct Netns {
    pub name: String,
    host_ifs: Vec<String>,
}

impl Netns {
    /// A fresh namespace `name` with its loopback up (leftovers of a killed run removed).
    pub fn create(name: &str) -> Netns {
        quiet_ip(&["netns", "del", name]);
        ip(&["netns", "add", name]);
        ip(&["netns", "exec", name, "ip", "link", "set", "lo", "up"]);
        Netns {
            name: name.to_string(),
            host_ifs: Vec::new(),
        }
    }

    /// Adds a link named `<ifname>h` / `<ifname>n` (at most 14 characters) on the /30
    /// `<net>.0` (three octets, e.g. "10.231.45"): the host side is `.1`, this side `.2`.
    pub fn add_link(&mut self, ifname: &str, net: &str) -> Link {
        let (host_if, ns_if) = (format!("{ifname}h"), format!("{ifname}n"));
        let (host_ip, ns_ip) = (format!("{net}.1"), format!("{net}.2"));
        quiet_ip(&["link", "del", &host_if]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &self.name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let inside = |a: &[&str]| {
            let mut v = vec!["netns", "exec", &self.name];
            v.extend_from_slice(a);
            ip(&v);
        };
        inside(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        inside(&["ip", "link", "set", &ns_if, "up"]);
        self.host_ifs.push(host_if.clone());
        Link {
            host_if,
            host_ip,
            ns_ip,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for h in &self.host_ifs {
            quiet_ip(&["link", "del", h]);
        }
        quiet_ip(&["netns", "del", &self.name]);
    }
}
