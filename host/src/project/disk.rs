//! Reading the project's folders from disk: every entry is opened by its name relative to an
//! open folder, never through a link (`O_NOFOLLOW`, and `.`/`..` are never opened), so
//! nothing outside the project folder is read; and with as few system calls as that allows,
//! since `status` and an `up` with nothing to do read every migration on every run.
//!
//! A folder costs one open, its listing and one close; a file one open, two reads (the second
//! confirms the end) and one close. Reading through `std::fs` or a path-resolving wrapper
//! costs twice that (a re-opened listing, a size probe and a seek per file), which for a
//! project of hundreds of migrations is most of the time a run takes. The folders are read
//! on as many threads as there are cores ([`in_parallel`]): the work is system calls, which
//! run side by side.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

/// An open folder of the project.
pub(super) struct Folder {
    dir: Dir,
}

/// What an entry of a folder is, as its listing (or, where the file system does not say, a
/// look at the entry itself, not following a link) tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EntryKind {
    File,
    Folder,
    /// A link, a device, a socket or a pipe: nothing wasmig reads.
    Other,
}

/// One entry of a folder: its name as wasmig shows and matches it, and as the disk has it.
pub(super) struct Entry {
    pub name: String,
    pub kind: EntryKind,
    raw: CString,
}

impl Folder {
    /// Opens the project folder itself, as the user named it (a link to it is followed).
    pub(super) fn open(path: &Path) -> io::Result<Folder> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Folder { dir: Dir::new(fd)? })
    }

    /// Opens a sub-folder that [`Folder::entries`] listed; a link is refused.
    pub(super) fn open_child(&self, entry: &Entry) -> io::Result<Folder> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(self.dir.fd()?, entry.raw.as_c_str(), flags, Mode::empty())?;
        Ok(Folder { dir: Dir::new(fd)? })
    }

    /// The folder's entries, without `.` and `..`, in the order the disk lists them.
    pub(super) fn entries(&mut self) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        while let Some(entry) = self.dir.read() {
            let entry = entry?;
            let raw = entry.file_name();
            if raw == c"." || raw == c".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => self.kind_of(raw)?,
                known => kind_from(known),
            };
            let name = raw.to_string_lossy().into_owned();
            entries.push(Entry { name, kind, raw: raw.to_owned() });
        }
        Ok(entries)
    }

    /// Some file systems list no types: look at the entry itself.
    fn kind_of(&self, raw: &CStr) -> io::Result<EntryKind> {
        let stat = rustix::fs::statat(self.dir.fd()?, raw, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(kind_from(FileType::from_raw_mode(stat.st_mode)))
    }

    /// The whole of a file that [`Folder::entries`] listed; a link is refused.
    pub(super) fn read(&self, entry: &Entry) -> io::Result<Vec<u8>> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut file = File::from(rustix::fs::openat(self.dir.fd()?, entry.raw.as_c_str(), flags, Mode::empty())?);
        // A script or a manifest is read into the stack and copied out at its size: no size
        // probe, no seek, and no buffer larger than the file kept for every file of the
        // project. A larger file (a component) goes on into a vector sized by the file.
        let mut first = [0u8; FIRST_READ];
        let mut filled = 0;
        while filled < first.len() {
            match file.read(&mut first[filled..]) {
                Ok(0) => return Ok(first[..filled].to_vec()),
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        let mut bytes = first.to_vec();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// What one read takes into the stack: a SQL script or a manifest fits.
const FIRST_READ: usize = 16 * 1024;

/// Folders one thread reads before a second thread is worth starting.
const FOLDERS_PER_THREAD: usize = 48;

/// `work` over each of `items` (folders to read), on as many threads as the machine has cores (up to one per
/// [`FOLDERS_PER_THREAD`] items), the results in the items' order. Reading a large project is
/// system calls, which run in parallel; a thread the system will not start leaves its share
/// to this one.
pub(super) fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    // Only a project large enough to share asks how many cores there are (a read of cgroups).
    let threads = match items.len() / FOLDERS_PER_THREAD {
        0 | 1 => 1,
        shares => std::thread::available_parallelism().map_or(1, NonZeroUsize::get).min(shares),
    };
    if threads == 1 {
        return items.iter().map(work).collect();
    }
    let share = items.len().div_ceil(threads);
    let work = &work;
    std::thread::scope(|scope| {
        let mut parts = items.chunks(share);
        let mine = parts.next().unwrap_or_default();
        let others: Vec<_> = parts
            .map(|part| (part, std::thread::Builder::new().spawn_scoped(scope, move || part.iter().map(work).collect())))
            .collect();
        let mut results: Vec<R> = mine.iter().map(work).collect();
        for (part, started) in others {
            let done: Vec<R> = match started {
                Ok(thread) => thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => part.iter().map(work).collect(),
            };
            results.extend(done);
        }
        results
    })
}

fn kind_from(file_type: FileType) -> EntryKind {
    match file_type {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Folder,
        _ => EntryKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(folder: &mut Folder) -> Vec<(String, EntryKind)> {
        let mut found: Vec<_> = folder.entries().unwrap().into_iter().map(|e| (e.name, e.kind)).collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    #[test]
    fn lists_files_folders_and_links_without_dot_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("up.sql"), "SELECT 1;").unwrap();
        std::fs::create_dir(dir.path().join("0001_a")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link.sql")).unwrap();
        let mut folder = Folder::open(dir.path()).unwrap();
        assert_eq!(
            names(&mut folder),
            [
                ("0001_a".to_owned(), EntryKind::Folder),
                ("link.sql".to_owned(), EntryKind::Other),
                ("up.sql".to_owned(), EntryKind::File)
            ]
        );
    }

    #[test]
    fn reads_whole_files_small_and_large() {
        let dir = tempfile::tempdir().unwrap();
        let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("small"), "abc").unwrap();
        std::fs::write(dir.path().join("large"), &large).unwrap();
        std::fs::write(dir.path().join("exact"), &large[..FIRST_READ]).unwrap();
        std::fs::write(dir.path().join("empty"), "").unwrap();
        let mut folder = Folder::open(dir.path()).unwrap();
        let entries = folder.entries().unwrap();
        let read = |name: &str| folder.read(entries.iter().find(|e| e.name == name).unwrap()).unwrap();
        assert_eq!(read("small"), b"abc");
        assert_eq!(read("large"), large);
        assert_eq!(read("exact"), &large[..FIRST_READ]);
        assert!(read("empty").is_empty());
    }

    #[test]
    fn a_link_put_where_a_listed_file_was_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("up.sql"), "SELECT 1;").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut folder = Folder::open(dir.path()).unwrap();
        let entries = folder.entries().unwrap();
        // Swapped for links after the listing, as a racing writer could.
        std::fs::remove_file(dir.path().join("up.sql")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("up.sql")).unwrap();
        std::fs::remove_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("sub")).unwrap();
        let entry = |name: &str| entries.iter().find(|e| e.name == name).unwrap();
        assert_eq!(folder.read(entry("up.sql")).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        assert!(folder.open_child(entry("sub")).is_err());
    }
}
