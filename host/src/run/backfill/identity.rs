//! Worker ids, the names chunk leases are held under: unique across machines and runs, and
//! telling enough to see when a holder on this machine has died, so that a restart after a
//! crash takes its chunks over at once instead of waiting out their leases.
//!
//! An id reads `host:pid:space.tag`. `space` names this boot of this machine and this process
//! id namespace (a container has its own), so a process id is only ever compared with another
//! from the same space; `tag` tells apart the workers of one process and of its runs.

use std::path::Path;

/// This process as worker ids name it, read from the system once per run.
pub struct ThisProcess {
    host: String,
    pid: u32,
    /// This boot and process id namespace, hashed; None where Linux's /proc does not say.
    space: Option<String>,
}

impl ThisProcess {
    pub fn read() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        let space = (|| {
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
            let space = blake3::hash(format!("{}:{}", boot.trim(), namespace.display()).as_bytes()).to_hex();
            Some(space[..8].to_owned())
        })();
        ThisProcess { host, pid: std::process::id(), space }
    }

    /// The id of this process's worker `index`.
    pub fn worker_id(&self, index: u32) -> String {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let tag = blake3::hash(format!("{nanos}:{}:{index}", self.pid).as_bytes()).to_hex();
        let space = self.space.as_deref().unwrap_or("unknown");
        format!("{}:{}:{space}.{}", self.host, self.pid, &tag[..8])
    }

    /// True when `worker` ran on this machine, in this process id namespace, in another
    /// process that no longer exists. False whenever that cannot be told for sure (another
    /// machine or container, an id of another format, no /proc), and for this process's own
    /// workers.
    ///
    /// A process id can be reused after its process died; then the holder looks alive and its
    /// lease is waited out, the safe way to be wrong.
    pub fn outlived(&self, worker: &str) -> bool {
        let mut parts = worker.splitn(3, ':');
        let (Some(host), Some(pid), Some(rest)) = (parts.next(), parts.next(), parts.next()) else { return false };
        let Some((space, _tag)) = rest.split_once('.') else { return false };
        let Ok(pid) = pid.parse::<u32>() else { return false };
        let Some(here) = &self.space else { return false };
        host == self.host
            && space == here
            && pid != self.pid
            && Path::new("/proc/self").exists()
            && !Path::new("/proc").join(pid.to_string()).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_of_a_process_that_is_gone_died_here() {
        let here = ThisProcess::read();
        let died_here = |worker: &str| here.outlived(worker);
        let mine = here.worker_id(0);
        assert!(!died_here(&mine), "this process is alive");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let (host, rest) = mine.split_once(':').unwrap();
        let (_, space_and_tag) = rest.split_once(':').unwrap();
        assert!(died_here(&format!("{host}:{pid}:{space_and_tag}")), "a reaped child is gone");
        assert!(!died_here(&format!("elsewhere:{pid}:{space_and_tag}")), "another machine");
        assert!(!died_here(&format!("{host}:{pid}:0000beef.{}", "t")), "another pid namespace");
        assert!(!died_here(&format!("{host}:{pid}")), "an id of another format");
    }
}
