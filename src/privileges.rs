//! Privilege drop: `user` and `group` (names or numeric ids) are resolved
//! when the config is validated, so a typo fails the start naming the key;
//! the worker switches to them after it has its sockets and files, before it
//! serves a byte. The master keeps root to bind new addresses on reload.

use std::ffi::CString;

/// A `user` or `group` that cannot be used; `setting` names which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct PrivilegeError {
    pub setting: &'static str,
    pub message: String,
}

impl PrivilegeError {
    fn new(setting: &'static str, message: impl Into<String>) -> Self {
        PrivilegeError {
            setting,
            message: message.into(),
        }
    }
}

/// The account the worker runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Resolves `user` and `group`; `group` defaults to the user's own group.
/// Both empty: `None` (no drop).
pub fn resolve(user: &str, group: &str) -> Result<Option<RunAs>, PrivilegeError> {
    if user.is_empty() {
        if group.is_empty() {
            return Ok(None);
        }
        return Err(PrivilegeError::new(
            "group",
            "set only together with user (a worker keeps the uid it has otherwise)",
        ));
    }
    let (uid, primary_gid) = lookup_user(user).map_err(|m| PrivilegeError::new("user", m))?;
    let gid = match group {
        "" => primary_gid,
        g => lookup_group(g).map_err(|m| PrivilegeError::new("group", m))?,
    };
    Ok(Some(RunAs { uid, gid }))
}

/// (uid, primary gid) of a user name or numeric id. A numeric id without a
/// passwd entry is allowed (containers), with the group of the same number.
fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    let numeric = name.parse::<u32>().ok();
    let c_name = CString::new(name).map_err(|_| format!("invalid user name {name:?}"))?;
    // SAFETY: getpwnam_r/getpwuid_r fill `entry` using `buf` for its strings;
    // both outlive the call and we only read the two integer fields after a
    // successful return with a non-null `found`.
    unsafe {
        let mut entry: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = match numeric {
            Some(uid) => libc::getpwuid_r(uid, &mut entry, buf.as_mut_ptr(), buf.len(), &mut found),
            None => libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            ),
        };
        match (rc, found.is_null(), numeric) {
            (0, false, _) => Ok((entry.pw_uid, entry.pw_gid)),
            (_, _, Some(uid)) => Ok((uid, uid)),
            _ => Err(format!("no such user {name:?}")),
        }
    }
}

/// The gid of a group name or numeric id.
fn lookup_group(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let c_name = CString::new(name).map_err(|_| format!("invalid group name {name:?}"))?;
    // SAFETY: as in lookup_user: the entry and its buffer outlive the call and
    // only the gid is read after a successful, non-null result.
    unsafe {
        let mut entry: libc::group = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            c_name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        if rc == 0 && !found.is_null() {
            Ok(entry.gr_gid)
        } else {
            Err(format!("no such group {name:?}"))
        }
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Drops to `run_as` for good: supplementary groups, then gid, then uid (the
/// uid last, since it takes away the right to change the others). glibc
/// applies each change to every thread of the process.
pub fn drop_to(run_as: RunAs) -> std::io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain system calls taking integers and one pointer to a local
    // gid that lives across the call.
    unsafe {
        let master = libc::getppid();
        check(libc::setgroups(1, &run_as.gid))?;
        check(libc::setgid(run_as.gid))?;
        check(libc::setuid(run_as.uid))?;
        // Changing credentials clears the parent-death signal the master set:
        // set it again, so that a worker whose master dies still drains and
        // exits instead of serving unsupervised beside a new master.
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM))?;
        if libc::getppid() != master {
            return Err(std::io::Error::other("the master exited"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_and_unknown_accounts() {
        assert_eq!(resolve("", "").unwrap(), None);
        assert_eq!(resolve("root", "").unwrap(), Some(RunAs { uid: 0, gid: 0 }));
        assert_eq!(
            resolve("4321", "").unwrap(),
            Some(RunAs {
                uid: 4321,
                gid: 4321
            })
        );
        assert_eq!(resolve("0", "12").unwrap(), Some(RunAs { uid: 0, gid: 12 }));
        let e = resolve("no-such-user-here", "").unwrap_err();
        assert_eq!(e.setting, "user");
        let e = resolve("root", "no-such-group-here").unwrap_err();
        assert_eq!(e.setting, "group");
        assert_eq!(resolve("", "root").unwrap_err().setting, "group");
    }
}
