//! The host crate's error: what went wrong with the file, the sockets, the peer or the link,
//! with the path and the numbers involved, and what to do about it.

use crate::doorbell::Side;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// What went wrong on the host side of a link.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostError {
    /// A system call on a file or socket failed.
    Io {
        /// What we were doing ("create", "map", "bind the doorbell socket", ...).
        what: &'static str,
        /// The file or socket involved.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// The shared-memory file does not exist (the driver side creates it).
    MissingFile {
        /// The path looked for.
        path: PathBuf,
    },
    /// The shared-memory file is smaller than its layout needs.
    TooSmall {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        len: u64,
        /// Bytes needed.
        need: u64,
    },
    /// The file has no host block: it was not created by an rpmsg-host driver.
    NotOurs {
        /// The file.
        path: PathBuf,
    },
    /// The file was created by another version of this protocol.
    Version {
        /// The file.
        path: PathBuf,
        /// The version it says.
        found: u32,
    },
    /// This side asked for a setting the file was created with differently.
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Which setting.
        field: &'static str,
        /// What the file says.
        file: String,
        /// What this side asked for.
        ours: String,
    },
    /// The layout options cannot work.
    Geometry(String),
    /// A socket path is longer than `sun_path` holds.
    PathTooLong {
        /// The path.
        path: PathBuf,
    },
    /// Another live process already plays this side on this file.
    AlreadyRunning {
        /// The side.
        side: Side,
        /// Its socket, which answers.
        socket: PathBuf,
    },
    /// The other side is not running (its socket is missing or refuses connections).
    PeerNotRunning {
        /// The side we wait for.
        side: Side,
        /// Its socket.
        socket: PathBuf,
    },
    /// The other side closed the session cleanly.
    PeerClosed {
        /// The side that left.
        side: Side,
    },
    /// The other side died: its socket refuses connections (killed or crashed).
    PeerDied {
        /// The side that died.
        side: Side,
        /// Its process id, if it wrote one into the host block.
        pid: Option<u32>,
    },
    /// The other side is alive but did not answer within the timeout.
    PeerSilent {
        /// The side.
        side: Side,
        /// The timeout in milliseconds.
        timeout_ms: u64,
    },
    /// A wait for the other side was stopped by the caller (a signal, in the CLI).
    Interrupted,
    /// An error of the rpmsg link.
    Link(rpmsg::Error),
}

impl HostError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Whether the user asked for something that cannot work (a missing or wrong file, bad
    /// options): a command-line tool exits with status 2 for these.
    pub fn is_usage(&self) -> bool {
        match self {
            Self::MissingFile { .. }
            | Self::TooSmall { .. }
            | Self::NotOurs { .. }
            | Self::Version { .. }
            | Self::Mismatch { .. }
            | Self::Geometry(_)
            | Self::PathTooLong { .. } => true,
            Self::Io { .. }
            | Self::AlreadyRunning { .. }
            | Self::PeerNotRunning { .. }
            | Self::PeerClosed { .. }
            | Self::PeerDied { .. }
            | Self::PeerSilent { .. }
            | Self::Interrupted
            | Self::Link(_) => false,
        }
    }

    /// Whether the other process is gone or not answering.
    pub fn is_peer_failure(&self) -> bool {
        match self {
            Self::PeerNotRunning { .. }
            | Self::PeerClosed { .. }
            | Self::PeerDied { .. }
            | Self::PeerSilent { .. } => true,
            Self::Io { .. }
            | Self::MissingFile { .. }
            | Self::TooSmall { .. }
            | Self::NotOurs { .. }
            | Self::Version { .. }
            | Self::Mismatch { .. }
            | Self::Geometry(_)
            | Self::PathTooLong { .. }
            | Self::AlreadyRunning { .. }
            | Self::Interrupted
            | Self::Link(_) => false,
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, path, .. } => write!(f, "cannot {what} {}", path.display()),
            Self::MissingFile { path } => write!(
                f,
                "shared-memory file {} does not exist; start the driver side first, it creates the file",
                path.display()
            ),
            Self::TooSmall { path, len, need } => write!(
                f,
                "shared-memory file {} is {len} bytes but its layout needs {need}; recreate it from the driver side",
                path.display()
            ),
            Self::NotOurs { path } => write!(
                f,
                "{} is not an rpmsg shared-memory file (no host block at its end); let the driver side create it",
                path.display()
            ),
            Self::Version { path, found } => write!(
                f,
                "{} uses host-block version {found}, this program speaks version {}",
                path.display(),
                crate::file::HOST_BLOCK_VERSION
            ),
            Self::Mismatch {
                path,
                field,
                file,
                ours,
            } => write!(
                f,
                "{} was created with {field} {file}, this side asked for {ours}; use the same {field} on both sides or leave it out here",
                path.display()
            ),
            Self::Geometry(what) => write!(f, "invalid layout: {what}"),
            Self::PathTooLong { path } => write!(
                f,
                "socket path {} is longer than the 107 bytes a UNIX socket address holds; use a shorter name or socket directory",
                path.display()
            ),
            Self::AlreadyRunning { side, socket } => write!(
                f,
                "another process already runs the {side} side (its socket {} answers); stop it or use another shared-memory name",
                socket.display()
            ),
            Self::PeerNotRunning { side, socket } => write!(
                f,
                "the {side} side is not running (socket {} missing or refusing connections); start it first",
                socket.display()
            ),
            Self::PeerClosed { side } => write!(f, "the {side} side closed the session"),
            Self::PeerDied { side, pid } => {
                write!(f, "the {side} side")?;
                if let Some(pid) = pid {
                    write!(f, " (pid {pid})")?;
                }
                write!(
                    f,
                    " died: its doorbell socket refuses connections; restart it and try again"
                )
            }
            Self::PeerSilent { side, timeout_ms } => write!(
                f,
                "the {side} side is alive but did not answer within {timeout_ms} ms; is it stopped or overloaded?"
            ),
            Self::Interrupted => f.write_str("stopped while waiting for the other side"),
            Self::Link(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            // Transparent: the link error's own cause, if any.
            Self::Link(e) => std::error::Error::source(e),
            _ => None,
        }
    }
}

impl From<rpmsg::Error> for HostError {
    fn from(e: rpmsg::Error) -> Self {
        Self::Link(e)
    }
}
