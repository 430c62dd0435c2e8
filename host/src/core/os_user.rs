//! [`os_user`] and [`host_name`]: who runs wasmig, and where, as the operating system names
//! them.

/// The operating-system account running wasmig, for the history's `applied_by`: the login
/// variables, else (CI containers often set none) the process's uid looked up in /etc/passwd.
pub fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .or_else(user_from_uid)
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(unix)]
fn user_from_uid() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's own uid.
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid: u32 = fields.nth(1)?.parse().ok()?;
        (entry_uid == uid).then(|| name.to_owned())
    })
}

#[cfg(not(unix))]
fn user_from_uid() -> Option<String> {
    None
}

/// This machine's name, for messages that say which run holds a lock.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|name| !name.is_empty()))
        .unwrap_or_else(|| "this machine".to_owned())
}
