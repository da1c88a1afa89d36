//! End-to-end test harness: a lab of network namespaces with real kernel
//! TCP clients (curl) and real HTTP servers (nginx), plus a small UDP
//! request/response server.
//!
//! Hosts are namespaces; L2 segments are bridges inside one switch
//! namespace per lab; nothing is created or changed in the root namespace,
//! and only private test ranges are accepted, so lab traffic never leaves
//! the lab. Every lab has a unique name prefix `lbt-<pid>-<n>-<name>-`;
//! dropping the [`Lab`] (also while unwinding from a panic) kills its
//! processes and deletes its namespaces, a SIGINT/SIGTERM guard does the
//! same for the whole process, and each new lab first sweeps what crashed
//! runs (dead owning pid) left behind.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use lab_tests::Lab;
//! let Some(lab) = Lab::new_or_skip("doc")? else { return Ok(()) };
//! let seg = lab.segment("net", "10.11.0.0/24")?;
//! let (client, rs1) = (lab.host("client")?, lab.host("rs1")?);
//! lab.link(&client, &seg, "10.11.0.10/24")?;
//! lab.link(&rs1, &seg, "10.11.0.21/24")?;
//! let server = lab.nginx(&rs1, "10.11.0.21:80".parse()?, "rs1")?;
//! assert_eq!(lab.curl(&client, &server.url("/"))?.text(), "rs1\n");
//! # Ok(()) }
//! ```
//!
//! Prerequisites: root, iproute2, nginx, curl (tcpdump and ethtool for
//! captures and offloads); `deploy/setup.sh` installs them. Without root or
//! `ip netns`, [`Lab::new`] fails with a clear message; `LAB_SKIP=1` makes
//! [`Lab::new_or_skip`] skip instead.

#![forbid(unsafe_code)]

pub mod capture;
pub mod cmd;
pub mod directord;
pub mod flows;
pub mod http;
pub mod lab;
pub mod modes;
pub mod pair;
pub mod process;
pub mod sweep;
pub mod udp;

pub use capture::Capture;
pub use directord::{Bins, Directord};
pub use http::{
    CurlOptions, CurlTiming, DEFAULT_BIG_MIB, Download, HttpResponse, HttpServer, NginxOptions,
    http_url,
};
pub use lab::{Host, Iface, Lab, SKIP_ENV, Segment, is_root, mac_for, sha256_file, skip_requested};
pub use modes::{Balancer, LvsLab, LvsOptions};
pub use pair::{PairLab, VrrpOptions};
pub use process::LabChild;
pub use udp::{UdpAsk, UdpExchange, UdpReply, UdpServer};
