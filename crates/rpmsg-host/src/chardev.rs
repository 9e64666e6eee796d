//! The Linux kernel's rpmsg character devices, from user space: `/dev/rpmsg_ctrlN` (the control
//! device of one rpmsg transport, `rpmsg_ctrl`) and `/dev/rpmsgN` (one endpoint each,
//! `rpmsg_char`), plus the rpmsg bus and class as sysfs shows them. This is what a program on an
//! i.MX or STM32MP1 running Linux uses to talk to the firmware on the other core, and what our CI
//! uses inside a User-Mode Linux guest against the kernel's own `virtio_rpmsg_bus`.
//!
//! * [`Ctrl`] opens a control device and creates endpoint devices ([`Ctrl::create_endpoint`],
//!   `RPMSG_CREATE_EPT_IOCTL`) and local channels on the bus ([`Ctrl::create_channel`] and
//!   [`Ctrl::release_channel`], `RPMSG_CREATE_DEV_IOCTL` / `RPMSG_RELEASE_DEV_IOCTL`; the kernel
//!   announces a channel with a fixed source address to the remote through the name service).
//!   The ioctl returns no device number, so the new `/dev/rpmsgM` is found in sysfs: the new
//!   `rpmsgM` child of `/sys/class/rpmsg/rpmsg_ctrlN` whose `name`, `src` and `dst` match.
//! * [`Endpoint`] is one open `/dev/rpmsgN`: every `write` is one message and every `read`
//!   returns one message (truncated, without notice, to the buffer: give it room for the largest
//!   message, [`VIRTIO_MAX_PAYLOAD`] on virtio). Receive waits with `poll`; sends wait for a free
//!   transmit buffer with `poll` too, so both take a [`Timeout`]. With the `tokio` feature,
//!   `AsyncEndpoint` offers `async fn send` / `async fn recv` on the same descriptor.
//! * [`Sysfs`] lists channels (`/sys/bus/rpmsg/devices/*`), control devices and endpoint devices
//!   (`/sys/class/rpmsg/*`) from a root that tests point at a fake tree.
//!
//! What the kernel (6.1) does that shapes this API:
//! * an endpoint device can be open once at a time (a second `open` fails with `EBUSY`,
//!   [`DevError::Busy`]); for a device made through the control device the kernel endpoint
//!   exists only while the device is open, so open it before the remote sends;
//! * a message longer than a buffer's payload fails with `EMSGSIZE`
//!   ([`DevError::MessageTooLong`]; 496 bytes with virtio's 512-byte buffers); sending from an
//!   endpoint without a destination address fails with `EINVAL` ([`DevError::NoDestination`]);
//! * when the remote or the transport goes away, the endpoint device is removed: `read` and
//!   `write` on a descriptor still open fail with `EPIPE` and `poll` reports `EPOLLERR`
//!   ([`DevError::Gone`]);
//! * `RPMSG_DESTROY_EPT_IOCTL` refuses (`EINVAL`) the default endpoint of a channel, such as the
//!   `/dev/rpmsg0` of an announced `rpmsg-raw` service ([`DevError::DefaultEndpoint`]).
//!
//! Kernels newer than 6.1 also have `RPMSG_GET_OUTGOING_FLOWCONTROL` and
//! `RPMSG_SET_INCOMING_FLOWCONTROL` (`_IOR(0xb5, 5 and 6, int)`) on endpoint devices; 6.1 has
//! not, and neither does this module.
//!
//! All system calls with `unsafe` (the ioctls) live in the crate's `sys` module.

use crate::sys::{self, InfoIoctl};
use rpmsg::Timeout;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Opcode, opcode};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use rpmsg::RPMSG_ADDR_ANY;

/// Bytes of the name field of `struct rpmsg_endpoint_info` (the kernel's `RPMSG_NAME_SIZE`).
pub const RPMSG_NAME_SIZE: usize = 32;
/// The longest name, in bytes: the kernel keeps a terminating NUL in the 32.
pub const NAME_MAX_LEN: usize = RPMSG_NAME_SIZE - 1;
/// Bytes of `struct rpmsg_endpoint_info`: the name, then `src` and `dst` as native-endian `u32`.
pub const ENDPOINT_INFO_LEN: usize = 40;
/// `struct rpmsg_endpoint_info` as the ioctls pass it.
pub type RawEndpointInfo = [u8; ENDPOINT_INFO_LEN];
/// The largest message `virtio_rpmsg_bus` carries: 512-byte buffers less the 16-byte header.
/// Other transports (glink, smd) have their own limits; the kernel answers `EMSGSIZE` past it.
pub const VIRTIO_MAX_PAYLOAD: usize = 496;
/// How long the kernel's blocking send waits for a transmit buffer, and this module's default.
pub const KERNEL_SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// `RPMSG_CREATE_EPT_IOCTL` = `_IOW(0xb5, 0x1, struct rpmsg_endpoint_info)` on a control device.
pub const RPMSG_CREATE_EPT_IOCTL: Opcode = opcode::write::<RawEndpointInfo>(0xb5, 0x1);
/// `RPMSG_DESTROY_EPT_IOCTL` = `_IO(0xb5, 0x2)` on an endpoint device.
pub const RPMSG_DESTROY_EPT_IOCTL: Opcode = opcode::none(0xb5, 0x2);
/// `RPMSG_CREATE_DEV_IOCTL` = `_IOW(0xb5, 0x3, struct rpmsg_endpoint_info)` on a control device
/// (Linux 5.18 and later).
pub const RPMSG_CREATE_DEV_IOCTL: Opcode = opcode::write::<RawEndpointInfo>(0xb5, 0x3);
/// `RPMSG_RELEASE_DEV_IOCTL` = `_IOW(0xb5, 0x4, struct rpmsg_endpoint_info)` on a control device
/// (Linux 5.18 and later).
pub const RPMSG_RELEASE_DEV_IOCTL: Opcode = opcode::write::<RawEndpointInfo>(0xb5, 0x4);

/// The channel names [`Ctrl::release_channel`] refuses: releasing them would remove the control
/// device itself or the name service.
pub const PROTECTED_CHANNELS: [&str; 2] = ["rpmsg_ctrl", "rpmsg_ns"];

/// How long [`Ctrl`] waits for udev or devtmpfs to create a new device node, by default.
pub const DEFAULT_NODE_WAIT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Which way a message was going when a wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Waiting for a free transmit buffer.
    Send,
    /// Waiting for a message.
    Recv,
}

/// What went wrong with an rpmsg character device, and what to do about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum DevError {
    /// A name longer than [`NAME_MAX_LEN`] bytes.
    NameTooLong {
        /// The name given.
        name: String,
    },
    /// A name with a NUL byte in it.
    NameHasNul {
        /// The name given.
        name: String,
    },
    /// A name that is not UTF-8 (from [`EndpointInfo::from_bytes`]).
    NameNotUtf8 {
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// An address that is neither a number nor `any`.
    BadAddress {
        /// The text given.
        text: String,
    },
    /// The device node does not exist.
    NoSuchDevice {
        /// The path asked for.
        path: PathBuf,
        /// Every path looked at.
        looked_at: Vec<PathBuf>,
        /// The rpmsg device nodes that do exist in the device directory.
        present: Vec<PathBuf>,
    },
    /// Opening the device was not permitted.
    Permission {
        /// The device.
        path: PathBuf,
    },
    /// The endpoint device is open elsewhere (the kernel allows one opener at a time).
    Busy {
        /// The device.
        path: PathBuf,
    },
    /// The file is not the kind of rpmsg device the operation needs.
    NotRpmsg {
        /// The file.
        path: PathBuf,
        /// What was expected ("an rpmsg control device (/dev/rpmsg_ctrlN)", ...).
        expected: &'static str,
    },
    /// The kernel could not create the endpoint when the device was opened (`EINVAL`): most
    /// often its fixed source address is taken.
    OpenRefused {
        /// The device.
        path: PathBuf,
    },
    /// The kernel refused a message longer than one buffer (`EMSGSIZE`).
    MessageTooLong {
        /// The device.
        path: PathBuf,
        /// Bytes in the message.
        len: usize,
    },
    /// The endpoint has no destination address (`dst` is any), so the kernel cannot send.
    NoDestination {
        /// The device.
        path: PathBuf,
    },
    /// The endpoint is gone: the remote or the transport went away, or it was destroyed.
    Gone {
        /// The device.
        path: PathBuf,
    },
    /// A wait ran out.
    Timeout {
        /// The device.
        path: PathBuf,
        /// Waiting to send or to receive.
        dir: Direction,
        /// How long was waited.
        after: Duration,
    },
    /// Nothing to receive, or no transmit buffer free, and the call was not to wait.
    WouldBlock {
        /// The device.
        path: PathBuf,
        /// Sending or receiving.
        dir: Direction,
    },
    /// `RPMSG_DESTROY_EPT_IOCTL` on the default endpoint of a channel, which only releasing the
    /// channel removes.
    DefaultEndpoint {
        /// The device.
        path: PathBuf,
    },
    /// The kernel would not create the channel (`ENXIO`).
    ChannelRefused {
        /// The channel asked for.
        info: EndpointInfo,
    },
    /// No channel on the bus matches.
    NoSuchChannel {
        /// The channel asked for (an address of any matches every address).
        info: EndpointInfo,
        /// The channels there are.
        present: Vec<String>,
    },
    /// The kernel refused to release a channel (`EINVAL`).
    ReleaseRefused {
        /// The channel asked for.
        info: EndpointInfo,
    },
    /// Releasing this channel would remove the control device or the name service.
    ProtectedChannel {
        /// Its name.
        name: String,
    },
    /// The control device does not know the ioctl (a kernel before 5.18).
    Unsupported {
        /// The control device.
        path: PathBuf,
        /// The ioctl.
        ioctl: &'static str,
    },
    /// Something the kernel should have created is not in sysfs.
    NotInSysfs {
        /// What was looked for.
        what: String,
        /// Where.
        looked_at: Vec<PathBuf>,
    },
    /// The kernel created a device but its node did not appear in the device directory.
    NodeMissing {
        /// The device's name (`rpmsg1`).
        dev_name: String,
        /// The node looked for.
        node: PathBuf,
        /// Its device number, when sysfs gave it.
        devnum: Option<(u32, u32)>,
        /// How long was waited.
        waited: Duration,
    },
    /// There is no rpmsg bus in sysfs.
    NoRpmsgBus {
        /// The directory looked for.
        looked_at: PathBuf,
    },
    /// Any other system error.
    Io {
        /// What we were doing ("open", "read", "list", ...).
        what: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
}

impl DevError {
    /// Whether the caller asked for something that cannot work (a bad name, address or message
    /// size, a protected channel), as opposed to a failure at run time.
    pub fn is_usage(&self) -> bool {
        match self {
            Self::NameTooLong { .. }
            | Self::NameHasNul { .. }
            | Self::NameNotUtf8 { .. }
            | Self::BadAddress { .. }
            | Self::MessageTooLong { .. }
            | Self::ProtectedChannel { .. } => true,
            Self::NoSuchDevice { .. }
            | Self::Permission { .. }
            | Self::Busy { .. }
            | Self::NotRpmsg { .. }
            | Self::OpenRefused { .. }
            | Self::NoDestination { .. }
            | Self::Gone { .. }
            | Self::Timeout { .. }
            | Self::WouldBlock { .. }
            | Self::DefaultEndpoint { .. }
            | Self::ChannelRefused { .. }
            | Self::NoSuchChannel { .. }
            | Self::ReleaseRefused { .. }
            | Self::Unsupported { .. }
            | Self::NotInSysfs { .. }
            | Self::NodeMissing { .. }
            | Self::NoRpmsgBus { .. }
            | Self::Io { .. } => false,
        }
    }

    /// Whether the endpoint or its transport is gone for good.
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::Gone { .. })
    }

    fn io(what: &'static str, path: &Path, e: impl Into<io::Error>) -> Self {
        Self::Io {
            what,
            path: path.to_path_buf(),
            source: e.into(),
        }
    }
}

fn paths(v: &[PathBuf]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for DevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NameTooLong { name } => write!(
                f,
                "name {name:?} is {} bytes; an rpmsg name holds at most {NAME_MAX_LEN} bytes (32 with the terminating NUL)",
                name.len()
            ),
            Self::NameHasNul { name } => {
                write!(
                    f,
                    "name {name:?} contains a NUL byte; rpmsg names are C strings"
                )
            }
            Self::NameNotUtf8 { bytes } => write!(f, "name {} is not UTF-8", bytes.escape_ascii()),
            Self::BadAddress { text } => write!(
                f,
                "{text:?} is not an rpmsg address: give a 32-bit number (decimal, or hex with 0x), or `any` (also -1)"
            ),
            Self::NoSuchDevice {
                path,
                looked_at,
                present,
            } => write!(
                f,
                "no such device {} (looked at {}); rpmsg device nodes present: {}{}",
                path.display(),
                paths(looked_at),
                paths(present),
                if present.is_empty() {
                    " (is the remote running, and are rpmsg_char and rpmsg_ctrl loaded? `rpmsg dev list` shows what the kernel has)"
                } else {
                    ""
                }
            ),
            Self::Permission { path } => write!(
                f,
                "permission denied opening {}; run as root or give your user access (a udev rule)",
                path.display()
            ),
            Self::Busy { path } => write!(
                f,
                "{} is open in another process; the kernel lets one process open an endpoint device at a time",
                path.display()
            ),
            Self::NotRpmsg { path, expected } => {
                write!(f, "{} is not {expected}", path.display())
            }
            Self::OpenRefused { path } => write!(
                f,
                "the kernel could not create the endpoint of {} when opening it (EINVAL): its source address is probably in use by another endpoint; create it with another --src or with src any",
                path.display()
            ),
            Self::MessageTooLong { path, len } => write!(
                f,
                "message of {len} bytes is too long for {} (EMSGSIZE): one rpmsg message must fit one buffer, at most {VIRTIO_MAX_PAYLOAD} bytes on virtio_rpmsg_bus (512-byte buffers); send less or split it",
                path.display()
            ),
            Self::NoDestination { path } => write!(
                f,
                "{} has no destination address (dst any), so the kernel cannot send from it; create the endpoint with a destination (--dst)",
                path.display()
            ),
            Self::Gone { path } => write!(
                f,
                "{} is gone: the remote or the rpmsg transport went away, or the endpoint was destroyed",
                path.display()
            ),
            Self::Timeout { path, dir, after } => match dir {
                Direction::Recv => write!(
                    f,
                    "no message arrived on {} within {} ms",
                    path.display(),
                    after.as_millis()
                ),
                Direction::Send => write!(
                    f,
                    "no transmit buffer became free for {} within {} ms: the remote is not taking messages",
                    path.display(),
                    after.as_millis()
                ),
            },
            Self::WouldBlock { path, dir } => match dir {
                Direction::Recv => write!(f, "no message waiting on {}", path.display()),
                Direction::Send => {
                    write!(f, "no transmit buffer free for {} now", path.display())
                }
            },
            Self::DefaultEndpoint { path } => write!(
                f,
                "{} is the default endpoint of a channel and cannot be destroyed (EINVAL); release the channel instead (`rpmsg dev destroy --channel`), or let the remote withdraw it",
                path.display()
            ),
            Self::ChannelRefused { info } => write!(
                f,
                "the kernel refused to create channel {info} (ENXIO): one with that name and those addresses exists already, or this transport cannot create channels"
            ),
            Self::NoSuchChannel { info, present } => write!(
                f,
                "no channel matches {info} (an address of any matches all); channels on the bus: {}",
                if present.is_empty() {
                    "none".to_string()
                } else {
                    present.join(", ")
                }
            ),
            Self::ReleaseRefused { info } => write!(
                f,
                "the kernel refused to release channel {info} (EINVAL): it is not on this control device's transport, or the kernel predates RPMSG_RELEASE_DEV_IOCTL (Linux 5.18)"
            ),
            Self::ProtectedChannel { name } => write!(
                f,
                "refusing to release channel {name:?}: it carries the control device or the name service; release the channels you created"
            ),
            Self::Unsupported { path, ioctl } => write!(
                f,
                "{} does not know {ioctl}: it needs Linux 5.18 or later with CONFIG_RPMSG_CTRL",
                path.display()
            ),
            Self::NotInSysfs { what, looked_at } => write!(
                f,
                "{what} is not in sysfs (looked at {}); is sysfs mounted on /sys?",
                paths(looked_at)
            ),
            Self::NodeMissing {
                dev_name,
                node,
                devnum,
                waited,
            } => {
                write!(
                    f,
                    "the kernel created {dev_name} but {} did not appear within {} ms; mount devtmpfs (mount -t devtmpfs devtmpfs /dev)",
                    node.display(),
                    waited.as_millis()
                )?;
                if let Some((maj, min)) = devnum {
                    write!(f, " or create it: mknod {} c {maj} {min}", node.display())?;
                }
                Ok(())
            }
            Self::NoRpmsgBus { looked_at } => write!(
                f,
                "no rpmsg bus in sysfs ({} does not exist): the kernel has no rpmsg support loaded (CONFIG_RPMSG, a transport such as CONFIG_RPMSG_VIRTIO), or sysfs is not mounted",
                looked_at.display()
            ),
            Self::Io { what, path, source } => {
                write!(f, "{what} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for DevError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Names, addresses, struct rpmsg_endpoint_info
// ---------------------------------------------------------------------------------------------

/// Checks an rpmsg name: at most [`NAME_MAX_LEN`] bytes and no NUL.
///
/// # Errors
///
/// [`DevError::NameTooLong`], [`DevError::NameHasNul`].
pub fn check_name(name: &str) -> Result<(), DevError> {
    if name.as_bytes().contains(&0) {
        return Err(DevError::NameHasNul { name: name.into() });
    }
    if name.len() > NAME_MAX_LEN {
        return Err(DevError::NameTooLong { name: name.into() });
    }
    Ok(())
}

/// Parses an address: `any` or `-1` for [`RPMSG_ADDR_ANY`], a decimal number, or hex with `0x`.
///
/// # Errors
///
/// [`DevError::BadAddress`].
pub fn parse_addr(text: &str) -> Result<u32, DevError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("any") {
        return Ok(RPMSG_ADDR_ANY);
    }
    parse_sysfs_addr(t).ok_or_else(|| DevError::BadAddress { text: text.into() })
}

/// Parses an address as sysfs prints it: the bus attributes in hex (`0x400`), the endpoint
/// devices' in signed decimal (`-1` for any, since `rpmsg_char` prints a `u32` with `%d`).
pub fn parse_sysfs_addr(text: &str) -> Option<u32> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).ok();
    }
    let v: i64 = t.parse().ok()?;
    if let Ok(u) = u32::try_from(v) {
        return Some(u);
    }
    // `%d` of a u32 above i32::MAX: the same 32 bits, read as negative.
    i32::try_from(v).ok().map(|i| i as u32)
}

/// An address for people: `any`, or hex.
pub fn format_addr(addr: u32) -> String {
    if addr == RPMSG_ADDR_ANY {
        "any".into()
    } else {
        format!("{addr:#x}")
    }
}

/// What `RPMSG_CREATE_EPT_IOCTL`, `RPMSG_CREATE_DEV_IOCTL` and `RPMSG_RELEASE_DEV_IOCTL` take: a
/// name (checked: at most 31 bytes, no NUL), a local address `src` and a remote address `dst`,
/// either of which may be [`RPMSG_ADDR_ANY`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointInfo {
    name: String,
    src: u32,
    dst: u32,
}

impl EndpointInfo {
    /// A checked endpoint description.
    ///
    /// # Errors
    ///
    /// [`DevError::NameTooLong`], [`DevError::NameHasNul`].
    pub fn new(name: &str, src: u32, dst: u32) -> Result<Self, DevError> {
        check_name(name)?;
        Ok(Self {
            name: name.into(),
            src,
            dst,
        })
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The local address.
    pub fn src(&self) -> u32 {
        self.src
    }

    /// The remote address.
    pub fn dst(&self) -> u32 {
        self.dst
    }

    /// The 40 bytes of `struct rpmsg_endpoint_info`: the name NUL-padded to 32 bytes, then
    /// `src` and `dst` in this machine's byte order (an ioctl argument, not a wire format).
    pub fn to_bytes(&self) -> RawEndpointInfo {
        let mut raw = [0u8; ENDPOINT_INFO_LEN];
        let (name, addrs) = raw.split_at_mut(RPMSG_NAME_SIZE);
        // `new` checked the length: at most 31 bytes, so a NUL always follows.
        name.iter_mut()
            .zip(self.name.as_bytes())
            .for_each(|(d, s)| *d = *s);
        let (src, dst) = addrs.split_at_mut(4);
        src.copy_from_slice(&self.src.to_ne_bytes());
        dst.copy_from_slice(&self.dst.to_ne_bytes());
        raw
    }

    /// Parses the 40 bytes back.
    ///
    /// # Errors
    ///
    /// [`DevError::NameTooLong`] when the name field has no NUL, [`DevError::NameNotUtf8`].
    pub fn from_bytes(raw: &RawEndpointInfo) -> Result<Self, DevError> {
        let (name, addrs) = raw.split_at(RPMSG_NAME_SIZE);
        let end = name
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| DevError::NameTooLong {
                name: String::from_utf8_lossy(name).into_owned(),
            })?;
        let name = std::str::from_utf8(&name[..end]).map_err(|_| DevError::NameNotUtf8 {
            bytes: name[..end].to_vec(),
        })?;
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&addrs[i..i + 4]);
            u32::from_ne_bytes(w)
        };
        Self::new(name, word(0), word(4))
    }
}

impl fmt::Display for EndpointInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} (src {}, dst {})",
            self.name,
            format_addr(self.src),
            format_addr(self.dst)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// sysfs
// ---------------------------------------------------------------------------------------------

/// Where the kernel's view of rpmsg is: sysfs (normally `/sys`) and the device directory
/// (normally `/dev`). Tests point both at a fake tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysfs {
    sys: PathBuf,
    dev: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::system()
    }
}

/// A channel on the rpmsg bus (`/sys/bus/rpmsg/devices/ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Channel {
    /// The device's name: `TRANSPORT.NAME.SRC.DST` with the addresses it was created with in
    /// signed decimal, such as `virtio0.rpmsg-raw.-1.3328`.
    pub id: String,
    /// The service name (`name`).
    pub name: String,
    /// The local address now (`src`: a channel created with any gets one when a driver binds).
    pub src: u32,
    /// The remote address (`dst`).
    pub dst: u32,
    /// Whether the kernel announces it to the remote (`announce`), when sysfs says.
    pub announce: Option<bool>,
    /// The bound driver (`rpmsg_chrdev`, `rpmsg_ctrl`, `rpmsg_ns`, `rpmsg_tty`, ...), if any.
    pub driver: Option<String>,
    /// Its sysfs directory.
    pub sys_path: PathBuf,
}

impl Channel {
    /// The transport device it lives on (`virtio0`): the id less `.NAME.SRC.DST`.
    pub fn transport(&self) -> &str {
        let mut it = self.id.rsplitn(3, '.');
        let (_dst, _src) = (it.next(), it.next());
        let rest = it.next().unwrap_or("");
        rest.strip_suffix(&format!(".{}", self.name))
            .unwrap_or(rest)
    }

    /// Whether `info` designates this channel as `RPMSG_RELEASE_DEV_IOCTL` matches: same name,
    /// and each address equal unless it is any.
    pub fn matches(&self, info: &EndpointInfo) -> bool {
        self.name == info.name
            && (info.src == RPMSG_ADDR_ANY || info.src == self.src)
            && (info.dst == RPMSG_ADDR_ANY || info.dst == self.dst)
    }
}

/// A control device (`/sys/class/rpmsg/rpmsg_ctrlN`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CtrlDev {
    /// `rpmsg_ctrlN`.
    pub dev_name: String,
    /// Its device node (`/dev/rpmsg_ctrlN`).
    pub node: PathBuf,
    /// Major and minor number.
    pub devnum: Option<(u32, u32)>,
    /// The channel it belongs to (`virtio0.rpmsg_ctrl.0.0`).
    pub channel: Option<String>,
}

/// Where an endpoint device comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The default endpoint of this channel (an announced `rpmsg-raw` service, or one made with
    /// `RPMSG_CREATE_DEV_IOCTL`): removed with the channel, not destroyable.
    Channel(String),
    /// Made with `RPMSG_CREATE_EPT_IOCTL` on this control device: destroyable.
    Ctrl(String),
    /// Sysfs did not say.
    Unknown,
}

/// An endpoint device (`/sys/class/rpmsg/rpmsgN`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointDev {
    /// `rpmsgN`.
    pub dev_name: String,
    /// Its device node (`/dev/rpmsgN`).
    pub node: PathBuf,
    /// Major and minor number.
    pub devnum: Option<(u32, u32)>,
    /// The service name.
    pub name: String,
    /// The local address it was made with (any stays any here even once the kernel picked
    /// one at `open`).
    pub src: u32,
    /// The remote address.
    pub dst: u32,
    /// Where it comes from.
    pub origin: Origin,
}

impl EndpointDev {
    /// Opens the device.
    ///
    /// # Errors
    ///
    /// As [`Endpoint::open`].
    pub fn open(&self) -> Result<Endpoint, DevError> {
        Endpoint::open(&self.node)
    }
}

/// Everything rpmsg in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listing {
    /// Channels on the bus.
    pub channels: Vec<Channel>,
    /// Control devices.
    pub ctrls: Vec<CtrlDev>,
    /// Endpoint devices.
    pub endpoints: Vec<EndpointDev>,
}

fn read_attr(dir: &Path, attr: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(attr))
        .ok()
        .map(|s| s.trim_end_matches(['\n', '\0']).to_string())
}

fn link_name(dir: &Path, link: &str) -> Option<String> {
    std::fs::read_link(dir.join(link))
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn parse_devnum(s: &str) -> Option<(u32, u32)> {
    let (maj, min) = s.trim().split_once(':')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

fn numbered(name: &str, prefix: &str) -> Option<u32> {
    let n = name.strip_prefix(prefix)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// `rpmsgN`'s N.
fn endpoint_index(name: &str) -> Option<u32> {
    numbered(name, "rpmsg")
}

/// `rpmsg_ctrlN`'s N.
fn ctrl_index(name: &str) -> Option<u32> {
    numbered(name, "rpmsg_ctrl")
}

fn dir_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        v.push(e?.file_name().to_string_lossy().into_owned());
    }
    Ok(v)
}

impl Sysfs {
    /// The running system's: `/sys` and `/dev`.
    pub fn system() -> Self {
        Self::new("/sys")
    }

    /// Sysfs at `sys_root`, device nodes in `/dev`.
    pub fn new(sys_root: impl Into<PathBuf>) -> Self {
        Self {
            sys: sys_root.into(),
            dev: PathBuf::from("/dev"),
        }
    }

    /// The same, with device nodes in `dev_dir`.
    #[must_use]
    pub fn with_dev_dir(mut self, dev_dir: impl Into<PathBuf>) -> Self {
        self.dev = dev_dir.into();
        self
    }

    /// The sysfs root.
    pub fn sys_root(&self) -> &Path {
        &self.sys
    }

    /// The device directory.
    pub fn dev_dir(&self) -> &Path {
        &self.dev
    }

    /// `/sys/bus/rpmsg/devices`.
    pub fn bus_dir(&self) -> PathBuf {
        self.sys.join("bus/rpmsg/devices")
    }

    /// `/sys/class/rpmsg`.
    pub fn class_dir(&self) -> PathBuf {
        self.sys.join("class/rpmsg")
    }

    /// The channels on the bus, by id.
    ///
    /// # Errors
    ///
    /// [`DevError::NoRpmsgBus`] when the bus directory does not exist.
    pub fn channels(&self) -> Result<Vec<Channel>, DevError> {
        let bus = self.bus_dir();
        let names = match dir_names(&bus) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DevError::NoRpmsgBus { looked_at: bus });
            }
            Err(e) => return Err(DevError::io("list", &bus, e)),
        };
        let mut v: Vec<Channel> = names
            .into_iter()
            .filter_map(|id| self.channel(&id))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    /// One channel by id, if it is there.
    pub fn channel(&self, id: &str) -> Option<Channel> {
        let dir = self.bus_dir().join(id);
        let name = read_attr(&dir, "name")?;
        Some(Channel {
            id: id.to_string(),
            src: read_attr(&dir, "src")
                .and_then(|s| parse_sysfs_addr(&s))
                .unwrap_or(RPMSG_ADDR_ANY),
            dst: read_attr(&dir, "dst")
                .and_then(|s| parse_sysfs_addr(&s))
                .unwrap_or(RPMSG_ADDR_ANY),
            announce: read_attr(&dir, "announce").map(|s| s == "true"),
            driver: link_name(&dir, "driver"),
            name,
            sys_path: dir,
        })
    }

    fn class_names(&self) -> Result<Vec<String>, DevError> {
        let class = self.class_dir();
        match dir_names(&class) {
            Ok(n) => Ok(n),
            // No class directory: rpmsg_char and rpmsg_ctrl have made no device yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(DevError::io("list", &class, e)),
        }
    }

    fn node_of(&self, dir: &Path, dev_name: &str) -> PathBuf {
        let devname = read_attr(dir, "uevent").and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string))
        });
        self.dev.join(devname.as_deref().unwrap_or(dev_name))
    }

    /// The control devices, by number.
    ///
    /// # Errors
    ///
    /// [`DevError::Io`] when the class directory cannot be read.
    pub fn ctrl_devices(&self) -> Result<Vec<CtrlDev>, DevError> {
        let mut names: Vec<(u32, String)> = self
            .class_names()?
            .into_iter()
            .filter_map(|n| ctrl_index(&n).map(|i| (i, n)))
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .map(|(_, dev_name)| {
                let dir = self.class_dir().join(&dev_name);
                CtrlDev {
                    node: self.node_of(&dir, &dev_name),
                    devnum: read_attr(&dir, "dev").and_then(|s| parse_devnum(&s)),
                    channel: link_name(&dir, "device"),
                    dev_name,
                }
            })
            .collect())
    }

    /// The endpoint devices, by number.
    ///
    /// # Errors
    ///
    /// [`DevError::Io`] when the class directory cannot be read.
    pub fn endpoint_devices(&self) -> Result<Vec<EndpointDev>, DevError> {
        let mut names: Vec<(u32, String)> = self
            .class_names()?
            .into_iter()
            .filter_map(|n| endpoint_index(&n).map(|i| (i, n)))
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .filter_map(|(_, n)| self.endpoint_device(&n))
            .collect())
    }

    /// One endpoint device by name (`rpmsg1`), if it is there.
    pub fn endpoint_device(&self, dev_name: &str) -> Option<EndpointDev> {
        endpoint_index(dev_name)?;
        let dir = self.class_dir().join(dev_name);
        let name = read_attr(&dir, "name")?;
        let origin = match link_name(&dir, "device") {
            Some(p) if ctrl_index(&p).is_some() => Origin::Ctrl(p),
            Some(p) => Origin::Channel(p),
            None => Origin::Unknown,
        };
        Some(EndpointDev {
            node: self.node_of(&dir, dev_name),
            devnum: read_attr(&dir, "dev").and_then(|s| parse_devnum(&s)),
            src: read_attr(&dir, "src")
                .and_then(|s| parse_sysfs_addr(&s))
                .unwrap_or(RPMSG_ADDR_ANY),
            dst: read_attr(&dir, "dst")
                .and_then(|s| parse_sysfs_addr(&s))
                .unwrap_or(RPMSG_ADDR_ANY),
            name,
            origin,
            dev_name: dev_name.to_string(),
        })
    }

    /// The endpoint device with this device number, if any.
    ///
    /// # Errors
    ///
    /// As [`Sysfs::endpoint_devices`].
    pub fn endpoint_by_devnum(&self, devnum: (u32, u32)) -> Result<Option<EndpointDev>, DevError> {
        Ok(self
            .endpoint_devices()?
            .into_iter()
            .find(|e| e.devnum == Some(devnum)))
    }

    /// Channels, control devices and endpoint devices.
    ///
    /// # Errors
    ///
    /// [`DevError::NoRpmsgBus`] when there is no rpmsg bus; [`DevError::Io`].
    pub fn list(&self) -> Result<Listing, DevError> {
        Ok(Listing {
            channels: self.channels()?,
            ctrls: self.ctrl_devices()?,
            endpoints: self.endpoint_devices()?,
        })
    }

    /// The endpoint devices made through control device `ctrl` (`rpmsg_ctrl0`): the `rpmsgN`
    /// directories under it.
    ///
    /// # Errors
    ///
    /// [`DevError::NotInSysfs`] when the control device is not in sysfs.
    pub fn ctrl_children(&self, ctrl: &str) -> Result<Vec<String>, DevError> {
        let dir = self.class_dir().join(ctrl);
        let mut names = dir_names(&dir).map_err(|_| DevError::NotInSysfs {
            what: format!("control device {ctrl}"),
            looked_at: vec![dir.clone()],
        })?;
        // Those whose `device` link names the control device, wherever sysfs put them.
        let origin = Origin::Ctrl(ctrl.to_string());
        names.extend(
            self.endpoint_devices()?
                .into_iter()
                .filter(|e| e.origin == origin)
                .map(|e| e.dev_name),
        );
        let mut v: Vec<(u32, String)> = names
            .into_iter()
            .filter_map(|n| endpoint_index(&n).map(|i| (i, n)))
            .collect();
        v.sort();
        v.dedup();
        Ok(v.into_iter().map(|(_, n)| n).collect())
    }

    /// After `RPMSG_CREATE_EPT_IOCTL` on `ctrl`: the endpoint device that was not among
    /// `before` and has `info`'s name and addresses (the newest such if several).
    ///
    /// # Errors
    ///
    /// [`DevError::NotInSysfs`].
    pub fn find_new_endpoint(
        &self,
        ctrl: &str,
        before: &[String],
        info: &EndpointInfo,
    ) -> Result<EndpointDev, DevError> {
        let fits = |e: &EndpointDev| e.name == info.name && e.src == info.src && e.dst == info.dst;
        let children = self.ctrl_children(ctrl)?;
        let new = children
            .iter()
            .rev()
            .filter(|n| !before.contains(n))
            .filter_map(|n| self.endpoint_device(n))
            .find(fits);
        new.ok_or_else(|| DevError::NotInSysfs {
            what: format!("the endpoint device just created for {info}"),
            looked_at: vec![self.class_dir().join(ctrl)],
        })
    }

    /// The device nodes named `rpmsg*` in the device directory.
    pub fn present_nodes(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = dir_names(&self.dev)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.starts_with("rpmsg"))
            .map(|n| self.dev.join(n))
            .collect();
        v.sort();
        v
    }
}

/// Waits up to `wait` for `node` to exist.
fn wait_for_node(
    dev_name: &str,
    node: &Path,
    devnum: Option<(u32, u32)>,
    wait: Duration,
) -> Result<(), DevError> {
    let start = Instant::now();
    loop {
        if std::fs::symlink_metadata(node).is_ok() {
            return Ok(());
        }
        if start.elapsed() >= wait {
            return Err(DevError::NodeMissing {
                dev_name: dev_name.to_string(),
                node: node.to_path_buf(),
                devnum,
                waited: wait,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------------------------

/// Opens a device read-write, non-blocking (the waits are ours, with `poll`).
fn open_dev(path: &Path, sysfs: &Sysfs) -> Result<OwnedFd, DevError> {
    let flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    loop {
        return match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => Ok(fd),
            Err(Errno::INTR) => continue,
            Err(Errno::NOENT | Errno::NOTDIR) => Err(DevError::NoSuchDevice {
                path: path.to_path_buf(),
                looked_at: vec![path.to_path_buf()],
                present: sysfs.present_nodes(),
            }),
            Err(Errno::ACCESS | Errno::PERM) => Err(DevError::Permission {
                path: path.to_path_buf(),
            }),
            Err(Errno::BUSY) => Err(DevError::Busy {
                path: path.to_path_buf(),
            }),
            // The node outlived its device (udev is slow to remove it).
            Err(Errno::NXIO | Errno::NODEV) => Err(DevError::Gone {
                path: path.to_path_buf(),
            }),
            Err(Errno::INVAL) => Err(DevError::OpenRefused {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(DevError::io("open", path, e)),
        };
    }
}

/// The device number of a character device.
fn char_devnum(fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
    let st = rustix::fs::fstat(fd).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::CharacterDevice {
        return None;
    }
    Some((rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)))
}

// ---------------------------------------------------------------------------------------------
// Control device
// ---------------------------------------------------------------------------------------------

/// An open control device, `/dev/rpmsg_ctrlN`: makes endpoint devices and channels.
#[derive(Debug)]
pub struct Ctrl {
    fd: OwnedFd,
    path: PathBuf,
    sysfs: Sysfs,
    dev_name: Option<String>,
    node_wait: Duration,
}

impl Ctrl {
    /// Opens the control device at `path`, with the system's sysfs.
    ///
    /// # Errors
    ///
    /// [`DevError::NoSuchDevice`], [`DevError::Permission`], [`DevError::NotRpmsg`] for a
    /// character device sysfs does not list as an rpmsg control device, [`DevError::Io`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DevError> {
        Self::open_in(path, &Sysfs::system())
    }

    /// Opens `/dev/rpmsg_ctrl{index}` (in `sysfs`'s device directory).
    ///
    /// # Errors
    ///
    /// As [`Ctrl::open`].
    pub fn open_index(index: u32, sysfs: &Sysfs) -> Result<Self, DevError> {
        Self::open_in(sysfs.dev_dir().join(format!("rpmsg_ctrl{index}")), sysfs)
    }

    /// Opens the control device at `path`, finding it in `sysfs`.
    ///
    /// # Errors
    ///
    /// As [`Ctrl::open`].
    pub fn open_in(path: impl AsRef<Path>, sysfs: &Sysfs) -> Result<Self, DevError> {
        let path = path.as_ref();
        let fd = open_dev(path, sysfs)?;
        let ctrls = sysfs.ctrl_devices().unwrap_or_default();
        let dev_name = match char_devnum(fd.as_fd()) {
            Some(devnum) => match ctrls.iter().find(|c| c.devnum == Some(devnum)) {
                Some(c) => Some(c.dev_name.clone()),
                // A character device that sysfs knows, but not as a control device.
                None if sysfs.class_dir().exists() || sysfs.bus_dir().exists() => {
                    return Err(DevError::NotRpmsg {
                        path: path.to_path_buf(),
                        expected: "an rpmsg control device (/dev/rpmsg_ctrlN)",
                    });
                }
                None => None,
            },
            None => {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                name.filter(|n| ctrls.iter().any(|c| &c.dev_name == n))
            }
        };
        Ok(Self {
            fd,
            path: path.to_path_buf(),
            sysfs: sysfs.clone(),
            dev_name,
            node_wait: DEFAULT_NODE_WAIT,
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its sysfs name (`rpmsg_ctrl0`), when sysfs has it.
    pub fn dev_name(&self) -> Option<&str> {
        self.dev_name.as_deref()
    }

    /// How long to wait for a new device node to appear (default [`DEFAULT_NODE_WAIT`]).
    pub fn set_node_wait(&mut self, wait: Duration) {
        self.node_wait = wait;
    }

    fn sysfs_name(&self, what: &str) -> Result<&str, DevError> {
        self.dev_name
            .as_deref()
            .ok_or_else(|| DevError::NotInSysfs {
                what: format!(
                    "control device {} (needed to find the {what} it creates)",
                    self.path.display()
                ),
                looked_at: vec![self.sysfs.class_dir()],
            })
    }

    fn info_ioctl(&self, which: InfoIoctl, info: &EndpointInfo) -> Result<(), DevError> {
        let name = match which {
            InfoIoctl::CreateEndpoint => "RPMSG_CREATE_EPT_IOCTL",
            InfoIoctl::CreateChannel => "RPMSG_CREATE_DEV_IOCTL",
            InfoIoctl::ReleaseChannel => "RPMSG_RELEASE_DEV_IOCTL",
        };
        loop {
            let e = match sys::rpmsg_info_ioctl(self.fd.as_fd(), which, &info.to_bytes()) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            return Err(match (Errno::from_io_error(&e), which) {
                (Some(Errno::INTR), _) => continue,
                (Some(Errno::NOTTY), _) => DevError::NotRpmsg {
                    path: self.path.clone(),
                    expected: "an rpmsg control device (/dev/rpmsg_ctrlN)",
                },
                (Some(Errno::INVAL), InfoIoctl::CreateChannel) => DevError::Unsupported {
                    path: self.path.clone(),
                    ioctl: name,
                },
                (Some(Errno::INVAL), InfoIoctl::ReleaseChannel) => {
                    DevError::ReleaseRefused { info: info.clone() }
                }
                (Some(Errno::NXIO), InfoIoctl::CreateChannel) => {
                    DevError::ChannelRefused { info: info.clone() }
                }
                (Some(Errno::NODEV | Errno::PIPE), _) => DevError::Gone {
                    path: self.path.clone(),
                },
                _ => DevError::io(name, &self.path, e),
            });
        }
    }

    /// `RPMSG_CREATE_EPT_IOCTL`: makes an endpoint device for `info` and returns it once its
    /// node exists. The kernel endpoint itself is made when the device is opened (with `src`,
    /// or an address the kernel picks when `src` is any), and destroyed when it is closed; the
    /// device stays until [`Endpoint::destroy`] or until the transport goes.
    ///
    /// # Errors
    ///
    /// [`DevError::NotRpmsg`], [`DevError::NotInSysfs`] (sysfs is needed to find the new
    /// device), [`DevError::NodeMissing`], [`DevError::Gone`], [`DevError::Io`].
    pub fn create_endpoint(&self, info: &EndpointInfo) -> Result<EndpointDev, DevError> {
        let ctrl = self.sysfs_name("endpoint device")?;
        let before = self.sysfs.ctrl_children(ctrl)?;
        self.info_ioctl(InfoIoctl::CreateEndpoint, info)?;
        let dev = self.sysfs.find_new_endpoint(ctrl, &before, info)?;
        wait_for_node(&dev.dev_name, &dev.node, dev.devnum, self.node_wait)?;
        Ok(dev)
    }

    /// [`Ctrl::create_endpoint`], then opens it.
    ///
    /// # Errors
    ///
    /// As [`Ctrl::create_endpoint`] and [`Endpoint::open`].
    pub fn create_and_open(&self, info: &EndpointInfo) -> Result<Endpoint, DevError> {
        self.create_endpoint(info)?.open()
    }

    /// `RPMSG_CREATE_DEV_IOCTL`: makes a local channel on this transport's rpmsg bus. A driver
    /// whose name matches binds to it (`rpmsg-raw`: `rpmsg_char`, giving a new `/dev/rpmsgN`
    /// whose node this waits for) and, if `src` is not any, the kernel announces it to the
    /// remote through the name service. Returns the channel as sysfs shows it.
    ///
    /// # Errors
    ///
    /// [`DevError::ChannelRefused`] (it exists already), [`DevError::Unsupported`],
    /// [`DevError::NotInSysfs`], [`DevError::NodeMissing`], [`DevError::Io`].
    pub fn create_channel(&self, info: &EndpointInfo) -> Result<Channel, DevError> {
        let before: Vec<String> = self
            .sysfs
            .channels()
            .map(|v| v.into_iter().map(|c| c.id).collect())
            .unwrap_or_default();
        self.info_ioctl(InfoIoctl::CreateChannel, info)?;
        let after = self.sysfs.channels()?;
        let suffix = format!(".{}.{}.{}", info.name, info.src as i32, info.dst as i32);
        let ch = after
            .iter()
            .find(|c| !before.contains(&c.id) && c.matches(info))
            .or_else(|| after.iter().find(|c| c.id.ends_with(&suffix)))
            .cloned()
            .ok_or_else(|| DevError::NotInSysfs {
                what: format!("the channel just created for {info}"),
                looked_at: vec![self.sysfs.bus_dir()],
            })?;
        for ep in self.sysfs.endpoint_devices()? {
            if ep.origin == Origin::Channel(ch.id.clone()) {
                wait_for_node(&ep.dev_name, &ep.node, ep.devnum, self.node_wait)?;
            }
        }
        Ok(ch)
    }

    /// `RPMSG_RELEASE_DEV_IOCTL`: removes the channel matching `info` (an address of any
    /// matches every address) from the bus; with its driver go its devices, and the kernel
    /// announces the removal to the remote if it announced the channel.
    ///
    /// # Errors
    ///
    /// [`DevError::ProtectedChannel`] for `rpmsg_ctrl` and `rpmsg_ns`,
    /// [`DevError::NoSuchChannel`], [`DevError::ReleaseRefused`], [`DevError::Io`].
    pub fn release_channel(&self, info: &EndpointInfo) -> Result<(), DevError> {
        if PROTECTED_CHANNELS.contains(&info.name()) {
            return Err(DevError::ProtectedChannel {
                name: info.name.clone(),
            });
        }
        if let Ok(chs) = self.sysfs.channels() {
            if !chs.iter().any(|c| c.matches(info)) {
                return Err(DevError::NoSuchChannel {
                    info: info.clone(),
                    present: chs.into_iter().map(|c| c.id).collect(),
                });
            }
        }
        self.info_ioctl(InfoIoctl::ReleaseChannel, info)
    }
}

impl AsFd for Ctrl {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoint device
// ---------------------------------------------------------------------------------------------

/// An open endpoint device, `/dev/rpmsgN`: one message per send, one per receive.
///
/// The descriptor is always `O_NONBLOCK`; waiting is done with `poll` and a [`Timeout`], so a
/// send never sits in the kernel's fixed 15-second wait. In non-blocking mode
/// ([`Endpoint::set_nonblocking`]) `send` and `recv` do not wait at all and fail with
/// [`DevError::WouldBlock`] instead.
#[derive(Debug)]
pub struct Endpoint {
    fd: OwnedFd,
    path: PathBuf,
    nonblocking: bool,
    send_timeout: Timeout,
}

/// When `timeout`, counted from `now`, runs out (`None`: never).
fn deadline(timeout: Timeout, now: Instant) -> Option<Instant> {
    match timeout {
        Timeout::NoWait => Some(now),
        Timeout::After(d) => Some(
            now.checked_add(d)
                .unwrap_or(now + KERNEL_SEND_TIMEOUT * 1000),
        ),
        Timeout::Forever => None,
    }
}

/// The longest single `poll` while waiting for a transmit buffer: the kernel wakes pollers on
/// transmit completions only while completion interrupts are on, which another sender can turn
/// off, so the wait looks again now and then rather than trusting one wake-up.
const SEND_POLL_SLICE: Duration = Duration::from_millis(20);

impl Endpoint {
    /// Opens the endpoint device at `path` (the kernel makes its endpoint now, for a device
    /// made through a control device).
    ///
    /// # Errors
    ///
    /// [`DevError::NoSuchDevice`] (with the rpmsg nodes that do exist in `/dev`),
    /// [`DevError::Permission`], [`DevError::Busy`], [`DevError::OpenRefused`],
    /// [`DevError::Gone`], [`DevError::Io`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DevError> {
        let path = path.as_ref();
        let fd = open_dev(path, &Sysfs::system())?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
            nonblocking: false,
            send_timeout: Timeout::After(KERNEL_SEND_TIMEOUT),
        })
    }

    /// Wraps a descriptor that carries one message per `read` and `write` (an endpoint device
    /// opened elsewhere; a `SOCK_SEQPACKET` socket in tests). Sets it `O_NONBLOCK`. `path` names
    /// it in errors.
    ///
    /// # Errors
    ///
    /// The `fcntl` error.
    pub fn from_fd(fd: OwnedFd, path: impl Into<PathBuf>) -> Result<Self, DevError> {
        let path = path.into();
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| DevError::io("fcntl", &path, e))?;
        rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK)
            .map_err(|e| DevError::io("fcntl", &path, e))?;
        Ok(Self {
            fd,
            path,
            nonblocking: false,
            send_timeout: Timeout::After(KERNEL_SEND_TIMEOUT),
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its device number, for a character device (to find it in [`Sysfs`]).
    pub fn devnum(&self) -> Option<(u32, u32)> {
        char_devnum(self.fd.as_fd())
    }

    /// Non-blocking mode: `send` and `recv` fail with [`DevError::WouldBlock`] instead of
    /// waiting.
    pub fn set_nonblocking(&mut self, on: bool) {
        self.nonblocking = on;
    }

    /// Whether it is in non-blocking mode.
    pub fn is_nonblocking(&self) -> bool {
        self.nonblocking
    }

    /// How long [`Endpoint::send`] waits for a free transmit buffer (default 15 s, as the
    /// kernel's own blocking send).
    pub fn set_send_timeout(&mut self, timeout: Timeout) {
        self.send_timeout = timeout;
    }

    /// Sends `msg` as one message, waiting up to the send timeout for a transmit buffer.
    ///
    /// # Errors
    ///
    /// [`DevError::MessageTooLong`], [`DevError::NoDestination`], [`DevError::Gone`],
    /// [`DevError::Timeout`], [`DevError::WouldBlock`] in non-blocking mode, [`DevError::Io`].
    pub fn send(&self, msg: &[u8]) -> Result<(), DevError> {
        self.send_timeout(msg, self.send_timeout)
    }

    /// Sends `msg`, waiting up to `timeout` for a transmit buffer (`NoWait`: fail with
    /// [`DevError::WouldBlock`] if none is free).
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send`].
    pub fn send_timeout(&self, msg: &[u8], timeout: Timeout) -> Result<(), DevError> {
        let timeout = if self.nonblocking {
            Timeout::NoWait
        } else {
            timeout
        };
        let start = Instant::now();
        let deadline = deadline(timeout, start);
        loop {
            if self.write_once(msg)? {
                return Ok(());
            }
            if timeout == Timeout::NoWait {
                return Err(DevError::WouldBlock {
                    path: self.path.clone(),
                    dir: Direction::Send,
                });
            }
            let ev = self.wait(PollFlags::OUT, deadline, Some(SEND_POLL_SLICE), start)?;
            if ev.intersects(PollFlags::ERR | PollFlags::HUP) && !self.write_once(msg)? {
                return Err(self.gone());
            }
        }
    }

    /// Sends `msg` if a transmit buffer is free now: `Ok(false)` if none is.
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send`], without the timeouts.
    pub fn try_send(&self, msg: &[u8]) -> Result<bool, DevError> {
        self.write_once(msg)
    }

    /// One `write`: `Ok(false)` for `EAGAIN`.
    fn write_once(&self, msg: &[u8]) -> Result<bool, DevError> {
        loop {
            return match rustix::io::write(&self.fd, msg) {
                Ok(n) if n == msg.len() => Ok(true),
                Ok(n) => Err(DevError::io(
                    "write",
                    &self.path,
                    io::Error::other(format!(
                        "wrote {n} of {} bytes: not a message device",
                        msg.len()
                    )),
                )),
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => Ok(false),
                Err(Errno::MSGSIZE) => Err(DevError::MessageTooLong {
                    path: self.path.clone(),
                    len: msg.len(),
                }),
                Err(Errno::INVAL) => Err(DevError::NoDestination {
                    path: self.path.clone(),
                }),
                Err(
                    Errno::PIPE | Errno::NODEV | Errno::NXIO | Errno::SHUTDOWN | Errno::CONNRESET,
                ) => Err(self.gone()),
                // ERESTARTSYS leaking out of a blocking send that waited 15 s for a buffer.
                Err(e) if e.raw_os_error() == 512 => Err(DevError::Timeout {
                    path: self.path.clone(),
                    dir: Direction::Send,
                    after: KERNEL_SEND_TIMEOUT,
                }),
                Err(e) => Err(DevError::io("write", &self.path, e)),
            };
        }
    }

    /// Receives one message into `buf`, waiting up to `timeout`; returns its length. A message
    /// longer than `buf` is cut to fit, without notice (the kernel's `read`): give it room for
    /// the largest message ([`VIRTIO_MAX_PAYLOAD`] on virtio).
    ///
    /// # Errors
    ///
    /// [`DevError::Timeout`], [`DevError::WouldBlock`] (`NoWait`, or non-blocking mode),
    /// [`DevError::Gone`], [`DevError::Io`].
    pub fn recv(&self, buf: &mut [u8], timeout: Timeout) -> Result<usize, DevError> {
        let timeout = if self.nonblocking {
            Timeout::NoWait
        } else {
            timeout
        };
        let start = Instant::now();
        let deadline = deadline(timeout, start);
        loop {
            if let Some(n) = self.read_once(buf)? {
                return Ok(n);
            }
            if timeout == Timeout::NoWait {
                return Err(DevError::WouldBlock {
                    path: self.path.clone(),
                    dir: Direction::Recv,
                });
            }
            let ev = self.wait(PollFlags::IN, deadline, None, start)?;
            if ev.intersects(PollFlags::ERR | PollFlags::HUP) {
                return self.read_once(buf)?.ok_or_else(|| self.gone());
            }
        }
    }

    /// Receives one message if one is waiting.
    ///
    /// # Errors
    ///
    /// [`DevError::Gone`], [`DevError::Io`].
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<Option<usize>, DevError> {
        self.read_once(buf)
    }

    /// One `read`: `Ok(None)` for `EAGAIN`.
    fn read_once(&self, buf: &mut [u8]) -> Result<Option<usize>, DevError> {
        loop {
            return match rustix::io::read(&self.fd, &mut *buf) {
                // A zero-length message, or the end of a stream-like file: rpmsg devices never
                // hang up, sockets and pipes do.
                Ok(0) if self.hung_up() => Err(self.gone()),
                Ok(n) => Ok(Some(n)),
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => Ok(None),
                Err(
                    Errno::PIPE | Errno::NODEV | Errno::NXIO | Errno::SHUTDOWN | Errno::CONNRESET,
                ) => Err(self.gone()),
                Err(e) => Err(DevError::io("read", &self.path, e)),
            };
        }
    }

    fn hung_up(&self) -> bool {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(poll(&mut fds, Some(&zero)), Ok(1) if fds[0].revents().contains(PollFlags::HUP))
    }

    fn gone(&self) -> DevError {
        DevError::Gone {
            path: self.path.clone(),
        }
    }

    /// Polls for `events` until `deadline` (`None`: forever), in slices of at most `slice`.
    /// Returns what was ready (possibly nothing after a slice, to look again).
    fn wait(
        &self,
        events: PollFlags,
        deadline: Option<Instant>,
        slice: Option<Duration>,
        start: Instant,
    ) -> Result<PollFlags, DevError> {
        let now = Instant::now();
        let mut left = deadline.map(|d| d.saturating_duration_since(now));
        if left == Some(Duration::ZERO) {
            return Err(DevError::Timeout {
                path: self.path.clone(),
                dir: if events.contains(PollFlags::OUT) {
                    Direction::Send
                } else {
                    Direction::Recv
                },
                after: deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(start)),
            });
        }
        if let Some(s) = slice {
            left = Some(left.map_or(s, |l| l.min(s)));
        }
        let ts = left.and_then(|d| Timespec::try_from(d).ok());
        let mut fds = [PollFd::new(&self.fd, events)];
        match poll(&mut fds, ts.as_ref()) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(PollFlags::empty()),
            Err(e) => return Err(DevError::io("poll", &self.path, e)),
        }
        let rev = fds[0].revents();
        if rev.contains(PollFlags::NVAL) {
            return Err(DevError::io("poll", &self.path, Errno::BADF));
        }
        Ok(rev)
    }

    /// `RPMSG_DESTROY_EPT_IOCTL`: removes the endpoint and its device node, then closes it.
    /// Only for devices made through a control device.
    ///
    /// # Errors
    ///
    /// [`DevError::DefaultEndpoint`] for a channel's default endpoint, [`DevError::Gone`] if
    /// the kernel removed it already, [`DevError::NotRpmsg`], [`DevError::Io`].
    pub fn destroy(self) -> Result<(), DevError> {
        // An endpoint the kernel already took away polls as an error. Linux 6.1 does not check
        // for that in the ioctl and would tear the device down a second time: do not ask it.
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if matches!(poll(&mut fds, Some(&zero)), Ok(1) if fds[0].revents().contains(PollFlags::ERR))
        {
            return Err(self.gone());
        }
        loop {
            let e = match sys::rpmsg_destroy_ept_ioctl(self.fd.as_fd()) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            return Err(match Errno::from_io_error(&e) {
                Some(Errno::INTR) => continue,
                Some(Errno::INVAL) => DevError::DefaultEndpoint {
                    path: self.path.clone(),
                },
                Some(Errno::NOTTY) => DevError::NotRpmsg {
                    path: self.path.clone(),
                    expected: "an rpmsg endpoint device (/dev/rpmsgN)",
                },
                Some(Errno::PIPE | Errno::NODEV) => self.gone(),
                _ => DevError::io("RPMSG_DESTROY_EPT_IOCTL", &self.path, e),
            });
        }
    }
}

impl AsFd for Endpoint {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Endpoint {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

// ---------------------------------------------------------------------------------------------
// async (tokio)
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "tokio")]
pub use asynch::AsyncEndpoint;

#[cfg(feature = "tokio")]
mod asynch {
    use super::{DevError, Endpoint};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    /// An [`Endpoint`] on tokio's reactor: `async fn send` and `async fn recv`.
    ///
    /// A removed endpoint polls as an error only (`EPOLLERR`, no `EPOLLIN`), so the waits
    /// include [`Interest::ERROR`] and end in [`DevError::Gone`]. Both calls are cancel-safe: a
    /// message is sent or received whole, or not at all.
    #[derive(Debug)]
    pub struct AsyncEndpoint {
        inner: AsyncFd<Endpoint>,
    }

    impl AsyncEndpoint {
        /// Registers `ep` with the current tokio runtime (which must have IO enabled).
        ///
        /// # Errors
        ///
        /// [`DevError::Io`] when the registration fails (no runtime, or not pollable).
        pub fn new(ep: Endpoint) -> Result<Self, DevError> {
            let path = ep.path.clone();
            crate::sys::register_endpoint(ep)
                .map(|inner| Self { inner })
                .map_err(|e| DevError::io("register with tokio", &path, e))
        }

        /// The endpoint.
        pub fn get_ref(&self) -> &Endpoint {
            self.inner.get_ref()
        }

        /// The endpoint, deregistered.
        pub fn into_inner(self) -> Endpoint {
            self.inner.into_inner()
        }

        /// Sends `msg` as one message once a transmit buffer is free.
        ///
        /// # Errors
        ///
        /// As [`Endpoint::send`], less the timeouts (wrap the future in one).
        pub async fn send(&self, msg: &[u8]) -> Result<(), DevError> {
            loop {
                let mut guard = self
                    .inner
                    .ready(Interest::WRITABLE | Interest::ERROR)
                    .await
                    .map_err(|e| DevError::io("wait", self.get_ref().path(), e))?;
                if self.get_ref().try_send(msg)? {
                    return Ok(());
                }
                if guard.ready().is_error() || guard.ready().is_write_closed() {
                    return Err(self.get_ref().gone());
                }
                guard.clear_ready();
            }
        }

        /// Receives one message into `buf` (cut to fit, as [`Endpoint::recv`]).
        ///
        /// # Errors
        ///
        /// [`DevError::Gone`], [`DevError::Io`].
        pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, DevError> {
            loop {
                let mut guard = self
                    .inner
                    .ready(Interest::READABLE | Interest::ERROR)
                    .await
                    .map_err(|e| DevError::io("wait", self.get_ref().path(), e))?;
                if let Some(n) = self.get_ref().try_recv(buf)? {
                    return Ok(n);
                }
                if guard.ready().is_error() || guard.ready().is_read_closed() {
                    return Err(self.get_ref().gone());
                }
                guard.clear_ready();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests;
