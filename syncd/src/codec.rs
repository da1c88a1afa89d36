//! Small helpers around the generated messages: keys of entries, validation
//! of untrusted entries, message sizes and the chunker that keeps every
//! message under the contract's 1 MiB.

use std::net::IpAddr;

use lb_proto::common::{ConnEntry, ConnFlag, ConnKey, Endpoint, TemplateKey};
use lb_proto::sync::{MasterMessage, SubscriberMessage, SyncEvent, master_message, sync_event};
use prost::Message;

/// Every message stays under this many encoded bytes (sync.proto, SIZES).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Bytes a repeated field element costs beyond its own encoding: the tag
/// and the length prefix (a length prefix of up to 3 bytes covers 2 MiB).
pub const ELEMENT_OVERHEAD: usize = 4;

/// The identity of a table entry: a flow's 5-tuple or a template's key.
/// Used by in-memory tables; the director has its own binary keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKey {
    /// A flow: protocol, client ip:port, vip ip:port.
    Flow {
        /// Protocol (enum value).
        protocol: i32,
        /// Client address.
        client: (String, u32),
        /// Virtual address.
        vip: (String, u32),
    },
    /// A persistence template.
    Template {
        /// Protocol (enum value).
        protocol: i32,
        /// Masked client address.
        client_ip: String,
        /// Virtual address; absent for fwmark services.
        vip: Option<(String, u32)>,
        /// Firewall mark; 0 for address services.
        fwmark: u32,
    },
}

fn ep(e: &Option<Endpoint>) -> (String, u32) {
    e.as_ref()
        .map(|e| (e.ip.clone(), e.port))
        .unwrap_or_default()
}

/// True when the entry is a persistence template.
pub fn is_template(entry: &ConnEntry) -> bool {
    entry.flags & ConnFlag::Template as u32 != 0
}

impl EntryKey {
    /// The key of an entry (flow or template by its flags).
    pub fn of_entry(e: &ConnEntry) -> Self {
        if is_template(e) {
            Self::Template {
                protocol: e.protocol,
                client_ip: e.client.as_ref().map(|c| c.ip.clone()).unwrap_or_default(),
                vip: e.vip.as_ref().map(|v| (v.ip.clone(), v.port)),
                fwmark: e.fwmark,
            }
        } else {
            Self::Flow {
                protocol: e.protocol,
                client: ep(&e.client),
                vip: ep(&e.vip),
            }
        }
    }

    /// The key a ConnExpire names.
    pub fn of_conn_key(k: &ConnKey) -> Self {
        Self::Flow {
            protocol: k.protocol,
            client: ep(&k.client),
            vip: ep(&k.vip),
        }
    }

    /// The key a TemplateExpire names.
    pub fn of_template_key(k: &TemplateKey) -> Self {
        Self::Template {
            protocol: k.protocol,
            client_ip: k.client_ip.clone(),
            vip: k.vip.as_ref().map(|v| (v.ip.clone(), v.port)),
            fwmark: k.fwmark,
        }
    }

    /// The ConnKey of a flow entry.
    pub fn conn_key(e: &ConnEntry) -> ConnKey {
        ConnKey {
            protocol: e.protocol,
            client: e.client.clone(),
            vip: e.vip.clone(),
        }
    }

    /// The TemplateKey of a template entry.
    pub fn template_key(e: &ConnEntry) -> TemplateKey {
        TemplateKey {
            protocol: e.protocol,
            client_ip: e.client.as_ref().map(|c| c.ip.clone()).unwrap_or_default(),
            vip: e.vip.clone(),
            fwmark: e.fwmark,
        }
    }
}

fn check_endpoint(what: &str, e: &Option<Endpoint>, required: bool) -> Result<(), String> {
    match e {
        None if required => Err(format!("{what} missing")),
        None => Ok(()),
        Some(e) => {
            e.ip.parse::<IpAddr>()
                .map_err(|_| format!("{what} address {:?} is not an IP address", e.ip))?;
            if e.port > 65535 {
                return Err(format!("{what} port {} out of range", e.port));
            }
            Ok(())
        }
    }
}

/// Checks an entry received from the wire before it may enter a table:
/// endpoints present and parseable, ports in range, a state set. Sinks call
/// it and refuse the chunk or batch on error.
pub fn validate_entry(e: &ConnEntry) -> Result<(), String> {
    let template = is_template(e);
    check_endpoint("client", &e.client, true)?;
    // fwmark templates carry no vip.
    check_endpoint("vip", &e.vip, !(template && e.fwmark != 0))?;
    check_endpoint("real server", &e.real_server, true)?;
    if e.state == 0 {
        return Err("state unspecified".to_owned());
    }
    if let Some(t) = &e.template {
        t.client_ip
            .parse::<IpAddr>()
            .map_err(|_| format!("template client {:?} is not an IP address", t.client_ip))?;
        check_endpoint("template vip", &t.vip, false)?;
    }
    Ok(())
}

/// Checks every entry an event carries (expiries carry keys only, which
/// cannot corrupt a table).
pub fn validate_event(ev: &SyncEvent) -> Result<(), String> {
    match &ev.event {
        Some(sync_event::Event::ConnNew(n)) => {
            validate_entry(n.entry.as_ref().ok_or("ConnNew without entry")?)
        }
        Some(sync_event::Event::ConnUpdate(u)) => {
            validate_entry(u.entry.as_ref().ok_or("ConnUpdate without entry")?)
        }
        Some(sync_event::Event::TemplateNew(n)) => {
            validate_entry(n.entry.as_ref().ok_or("TemplateNew without entry")?)
        }
        Some(sync_event::Event::ConnExpire(x)) => x
            .key
            .as_ref()
            .map(|_| ())
            .ok_or_else(|| "ConnExpire without key".to_owned()),
        Some(sync_event::Event::TemplateExpire(x)) => x
            .key
            .as_ref()
            .map(|_| ())
            .ok_or_else(|| "TemplateExpire without key".to_owned()),
        None => Err("empty event".to_owned()),
    }
}

/// Encoded size of an event as an element of DeltaBatch.events.
pub fn event_cost(ev: &SyncEvent) -> usize {
    ev.encoded_len() + ELEMENT_OVERHEAD
}

/// Encoded size of an entry as an element of SnapshotChunk.entries.
pub fn entry_cost(e: &ConnEntry) -> usize {
    e.encoded_len() + ELEMENT_OVERHEAD
}

/// A master message.
pub fn mm(msg: master_message::Msg) -> MasterMessage {
    MasterMessage { msg: Some(msg) }
}

/// A subscriber message.
pub fn sm(msg: lb_proto::sync::subscriber_message::Msg) -> SubscriberMessage {
    SubscriberMessage { msg: Some(msg) }
}

/// Groups entries into chunks of at most `max_bytes` encoded (one entry
/// larger than that travels alone; entries are a few hundred bytes).
#[derive(Debug)]
pub struct Chunker {
    max_bytes: usize,
    buf: Vec<ConnEntry>,
    bytes: usize,
}

impl Chunker {
    /// A chunker cutting at `max_bytes` (clamped below 1 MiB with margin).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes: max_bytes.clamp(1024, MAX_MESSAGE_BYTES - 64 * 1024),
            buf: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds an entry; returns a full chunk when this one would overflow it.
    pub fn push(&mut self, e: ConnEntry) -> Option<Vec<ConnEntry>> {
        let cost = entry_cost(&e);
        let full = if !self.buf.is_empty() && self.bytes + cost > self.max_bytes {
            self.bytes = 0;
            Some(std::mem::take(&mut self.buf))
        } else {
            None
        };
        self.bytes += cost;
        self.buf.push(e);
        full
    }

    /// The last, partial chunk.
    pub fn finish(self) -> Option<Vec<ConnEntry>> {
        (!self.buf.is_empty()).then_some(self.buf)
    }
}
