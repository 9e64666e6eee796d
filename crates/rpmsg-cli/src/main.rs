//! `rpmsg`: RPMsg between two processes of one PC, over a shared-memory file.
//!
//! * `rpmsg demo` starts the remote as a second process and walks through the name service,
//!   echo, zero-copy send and receive, a blocking receive with a timeout, and a clean shutdown;
//! * `rpmsg echo` (alias `remote`) serves an echo endpoint, `rpmsg ping` makes round trips
//!   against it; either may be the driver or the device, in either layout;
//! * `rpmsg bench` measures latency and throughput against raw shared-memory baselines
//!   measured in the same run;
//! * `rpmsg dev` drives the Linux kernel's rpmsg character devices (`/dev/rpmsg_ctrlN`,
//!   `/dev/rpmsgN`): list, create, destroy, send, recv, ping;
//! * `rpmsg vhost-user --socket PATH` serves our device role to the Linux kernel's rpmsg stack
//!   (User-Mode Linux's `virtio_uml`) as a vhost-user back-end, with echo endpoints.
//!
//! Exit status: 0 on success, 1 when the link or the other process failed, 2 for bad
//! arguments or a missing, foreign or too-small shared-memory file, 130 or 143 after a SIGINT
//! or SIGTERM (the session is closed cleanly first; a second signal exits at once).

#![forbid(unsafe_code)]

mod bench;
mod common;
mod demo;
mod dev;
mod echo;
mod plot;
mod signal;
mod vhost;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// RPMsg between two processes over shared memory: demo, echo, ping, bench.
#[derive(Debug, Parser)]
#[command(name = "rpmsg", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Walk through rpmsg with the remote as a second process: name service, echo, zero-copy,
    /// receive timeouts, shutdown.
    Demo(demo::DemoArgs),
    /// Serve an echo endpoint (the remote, by default the device side).
    #[command(visible_alias = "remote")]
    Echo(echo::EchoArgs),
    /// Round trips against an echo service, with a latency summary.
    Ping(echo::PingArgs),
    /// Latency and throughput against raw shared-memory baselines measured in the same run.
    Bench(bench::BenchArgs),
    /// The Linux kernel's rpmsg devices (/dev/rpmsg_ctrlN, /dev/rpmsgN): list, create, destroy,
    /// send, recv, ping.
    Dev(dev::DevArgs),
    /// Our device role as a vhost-user back-end for the Linux kernel's rpmsg (User-Mode Linux's
    /// virtio_uml): echo endpoints rpmsg-raw and rpmsg-tty.
    VhostUser(vhost::VhostArgs),
    /// The demo's remote side (started by `rpmsg demo`).
    #[command(hide = true)]
    DemoRemote(common::LinkArgs),
    /// The benchmark's peer (started by `rpmsg bench`).
    #[command(hide = true)]
    BenchPeer(bench::PeerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = signal::install() {
        eprintln!("rpmsg: error: cannot install the SIGINT and SIGTERM handlers: {e}");
        return ExitCode::from(1);
    }
    let r = match &cli.command {
        Command::Demo(a) => demo::demo(a),
        Command::Echo(a) => echo::echo(a),
        Command::Ping(a) => echo::ping(a),
        Command::Bench(a) => bench::bench(a),
        Command::Dev(a) => dev::dev(a),
        Command::VhostUser(a) => vhost::vhost_user(a),
        Command::DemoRemote(a) => demo::demo_remote(a),
        Command::BenchPeer(a) => bench::peer(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.signal.is_some() => {
            eprintln!("rpmsg: {e}");
            ExitCode::from(e.code())
        }
        Err(e) => {
            eprintln!("rpmsg: error: {e}");
            ExitCode::from(e.code())
        }
    }
}
