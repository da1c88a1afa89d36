//! Hello checks and the SyncError messages that refuse or end a stream.
//!
//! The sentences are what an operator reads in `dirctl sync status` on the
//! other node, so each names both sides' values.

use lb_proto::sync::{Hello, SyncError, SyncErrorCode};

use crate::config::NodeInfo;

/// What the master knows when it judges a Hello.
#[derive(Debug, Clone)]
pub struct HelloContext<'a> {
    /// This (master) node.
    pub node: &'a NodeInfo,
    /// Accepted protocol versions.
    pub versions: std::ops::RangeInclusive<u32>,
    /// This node currently serves (is VRRP master).
    pub serving: bool,
    /// Endpoint of the node believed to be master, for NOT_MASTER.
    pub master_hint: &'a str,
    /// Another live stream has the Hello's node_id.
    pub duplicate: bool,
}

/// A SyncError with the master's version range filled in.
pub fn sync_error(
    code: SyncErrorCode,
    message: impl Into<String>,
    versions: &std::ops::RangeInclusive<u32>,
) -> SyncError {
    SyncError {
        code: code as i32,
        message: message.into(),
        min_supported_version: *versions.start(),
        max_supported_version: *versions.end(),
        master_hint: String::new(),
    }
}

fn sorted(v: &[u32]) -> Vec<u32> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Judges a Hello: `Ok` to accept, or the SyncError to answer before closing.
pub fn check_hello(hello: &Hello, ctx: &HelloContext<'_>) -> Result<(), SyncError> {
    let v = &ctx.versions;
    if !ctx.serving {
        let mut e = sync_error(
            SyncErrorCode::NotMaster,
            format!(
                "node {} is not the sync master{}",
                ctx.node.node_name,
                if ctx.master_hint.is_empty() {
                    String::new()
                } else {
                    format!("; try {}", ctx.master_hint)
                }
            ),
            v,
        );
        e.master_hint = ctx.master_hint.to_owned();
        return Err(e);
    }
    if !v.contains(&hello.protocol_version) {
        return Err(sync_error(
            SyncErrorCode::VersionMismatch,
            format!(
                "sync protocol version {} not supported: this master speaks {}..={}",
                hello.protocol_version,
                v.start(),
                v.end()
            ),
            v,
        ));
    }
    if hello.node_id.is_empty() {
        return Err(sync_error(
            SyncErrorCode::ProtocolViolation,
            "Hello without node_id",
            v,
        ));
    }
    if hello.cluster_id != ctx.node.cluster_id {
        return Err(sync_error(
            SyncErrorCode::ClusterMismatch,
            format!(
                "cluster id {:?} differs from this master's {:?}",
                hello.cluster_id, ctx.node.cluster_id
            ),
            v,
        ));
    }
    let (theirs, ours) = (sorted(&hello.vrids), sorted(&ctx.node.vrids));
    if theirs != ours {
        return Err(sync_error(
            SyncErrorCode::ClusterMismatch,
            format!("VRRP router ids {theirs:?} differ from this master's {ours:?}"),
            v,
        ));
    }
    if hello.node_id == ctx.node.node_id {
        return Err(sync_error(
            SyncErrorCode::ClusterMismatch,
            format!("node id {:?} is this master's own", hello.node_id),
            v,
        ));
    }
    if ctx.duplicate {
        return Err(sync_error(
            SyncErrorCode::DuplicateSubscriber,
            format!(
                "another stream from node {:?} is active; it is kept until it times out",
                hello.node_id
            ),
            v,
        ));
    }
    Ok(())
}

/// The gRPC status a SyncError closes the stream with (sync.proto,
/// SyncError).
pub fn status_for(e: &SyncError) -> tonic::Status {
    use tonic::Status;
    let msg = e.message.clone();
    match SyncErrorCode::try_from(e.code).unwrap_or(SyncErrorCode::Internal) {
        SyncErrorCode::VersionMismatch | SyncErrorCode::ClusterMismatch => {
            Status::failed_precondition(msg)
        }
        SyncErrorCode::NotMaster | SyncErrorCode::ShuttingDown => Status::unavailable(msg),
        SyncErrorCode::ProtocolViolation => Status::invalid_argument(msg),
        SyncErrorCode::DuplicateSubscriber => Status::already_exists(msg),
        SyncErrorCode::Internal | SyncErrorCode::Unspecified => Status::internal(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeInfo {
        NodeInfo {
            node_id: "a".into(),
            node_name: "dir-a".into(),
            cluster_id: "pair1".into(),
            vrids: vec![51, 52],
        }
    }

    fn hello() -> Hello {
        Hello {
            protocol_version: 1,
            node_id: "b".into(),
            node_name: "dir-b".into(),
            cluster_id: "pair1".into(),
            vrids: vec![52, 51],
            ..Default::default()
        }
    }

    fn ctx(n: &NodeInfo) -> HelloContext<'_> {
        HelloContext {
            node: n,
            versions: 1..=1,
            serving: true,
            master_hint: "",
            duplicate: false,
        }
    }

    fn code(r: Result<(), SyncError>) -> SyncErrorCode {
        SyncErrorCode::try_from(r.unwrap_err().code).unwrap()
    }

    #[test]
    fn accepts_matching_hello_with_vrids_in_any_order() {
        let n = node();
        assert!(check_hello(&hello(), &ctx(&n)).is_ok());
    }

    #[test]
    fn refusals() {
        let n = node();
        let h = Hello {
            protocol_version: 2,
            ..hello()
        };
        let e = check_hello(&h, &ctx(&n)).unwrap_err();
        assert_eq!(e.code, SyncErrorCode::VersionMismatch as i32);
        assert_eq!(
            e.message,
            "sync protocol version 2 not supported: this master speaks 1..=1"
        );
        assert_eq!((e.min_supported_version, e.max_supported_version), (1, 1));
        let h = Hello {
            cluster_id: "other".into(),
            ..hello()
        };
        assert_eq!(
            code(check_hello(&h, &ctx(&n))),
            SyncErrorCode::ClusterMismatch
        );
        let h = Hello {
            vrids: vec![51],
            ..hello()
        };
        assert_eq!(
            code(check_hello(&h, &ctx(&n))),
            SyncErrorCode::ClusterMismatch
        );
        let c = HelloContext {
            duplicate: true,
            ..ctx(&n)
        };
        assert_eq!(
            code(check_hello(&hello(), &c)),
            SyncErrorCode::DuplicateSubscriber
        );
        let c = HelloContext {
            serving: false,
            master_hint: "192.0.2.2:7001",
            ..ctx(&n)
        };
        let e = check_hello(&hello(), &c).unwrap_err();
        assert_eq!(e.code, SyncErrorCode::NotMaster as i32);
        assert_eq!(e.master_hint, "192.0.2.2:7001");
    }
}
