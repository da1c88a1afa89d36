//! A minimal VRRPv3 daemon around the driver, for interop checks against
//! keepalived and for looking at our adverts with tcpdump.
//!
//! ```text
//! vrrpd --interface IF --vrid N --priority P --primary IP --vip IP [--vip IP]...
//!       [--name NAME] [--advert-cs N] [--peer IP]... [--nopreempt]
//!       [--preempt-delay-ms N] [--notify PROGRAM]
//! ```
//!
//! Prints one `EVENT <instance> <from> <to> <reason>` line per transition.
//! SIGINT/SIGTERM (or end of standard input) shuts down cleanly: a master
//! advertises priority 0 first. Needs CAP_NET_RAW.

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::signal::unix::{SignalKind, signal};
use vrrp::{DriverEvent, DriverInstance, InstanceConfig};

fn usage() -> ! {
    eprintln!(
        "usage: vrrpd --interface IF --vrid N --priority P --primary IP --vip IP [--vip IP]... \
         [--name NAME] [--advert-cs N] [--peer IP]... [--nopreempt] [--preempt-delay-ms N] \
         [--notify PROGRAM]"
    );
    std::process::exit(2)
}

fn parse<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
    let v = v.unwrap_or_else(|| usage());
    v.parse().unwrap_or_else(|_| {
        eprintln!("vrrpd: bad value {v:?} for {flag}");
        usage()
    })
}

fn parse_args() -> DriverInstance {
    let mut cfg = InstanceConfig {
        name: "vi_1".into(),
        vrid: 0,
        priority: 100,
        advert_interval_cs: 100,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_ip: Ipv4Addr::UNSPECIFIED,
        vips: vec![],
        unicast_peers: vec![],
    };
    let (mut interface, mut notify) = (String::new(), None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--interface" => interface = parse(&flag, args.next()),
            "--name" => cfg.name = parse(&flag, args.next()),
            "--vrid" => cfg.vrid = parse(&flag, args.next()),
            "--priority" => cfg.priority = parse(&flag, args.next()),
            "--primary" => cfg.primary_ip = parse(&flag, args.next()),
            "--vip" => cfg.vips.push(parse(&flag, args.next())),
            "--peer" => cfg.unicast_peers.push(parse(&flag, args.next())),
            "--advert-cs" => cfg.advert_interval_cs = parse(&flag, args.next()),
            "--nopreempt" => cfg.preempt = false,
            "--preempt-delay-ms" => {
                cfg.preempt_delay = Duration::from_millis(parse(&flag, args.next()))
            }
            "--notify" => notify = Some(vec![parse(&flag, args.next())]),
            _ => usage(),
        }
    }
    if interface.is_empty() {
        usage()
    }
    if let Err(e) = cfg.validate() {
        eprintln!("vrrpd: {e}");
        std::process::exit(2)
    }
    DriverInstance {
        config: cfg,
        interface,
        notify,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let instance = parse_args();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let handle = match vrrp::spawn(vec![instance], tx).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vrrpd: {e}");
            std::process::exit(1)
        }
    };
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    println!("READY");
    loop {
        tokio::select! {
            Some(DriverEvent::Transition { instance, from, to, reason, .. }) = events.recv() => {
                println!("EVENT {instance} {from} {to} {reason}");
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            line = stdin.next_line() => if !matches!(line, Ok(Some(_))) { break },
        }
    }
    handle.shutdown().await;
    while let Ok(DriverEvent::Transition {
        instance,
        from,
        to,
        reason,
        ..
    }) = events.try_recv()
    {
        println!("EVENT {instance} {from} {to} {reason}");
    }
    for (name, n) in handle.counters() {
        println!("COUNTER {name} {n}");
    }
    // Give the STOP notify program a moment before the runtime goes away.
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("STOPPED");
}
