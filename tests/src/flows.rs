//! Long-lived flows through the VIP, from the client of a [`PairLab`]: the
//! `lab-flows` generator (N keep-alive connections, a request every
//! interval each) and its summary line — what users of a failover feel.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::pair::PairLab;
use crate::process::LabChild;

/// Summary figures of a lab-flows run.
#[derive(Debug)]
pub struct FlowSummary {
    /// Connections opened.
    pub conns: usize,
    /// Connections that saw an error (reset, timeout, bad reply).
    pub broken: usize,
    /// Connections whose replies came from another real server than at
    /// first.
    pub moved: usize,
    /// Median over flows of the longest gap between replies, ms.
    pub gap_p50_ms: u64,
    /// 99th percentile of the same, ms.
    pub gap_p99_ms: u64,
    /// The longest gap of all, ms.
    pub gap_max_ms: u64,
    /// Everything lab-flows printed.
    pub text: String,
}

impl FlowSummary {
    /// Parse lab-flows' output (its `summary ...` line).
    pub fn parse(out: &str) -> Result<FlowSummary> {
        let line = out
            .lines()
            .find(|l| l.starts_with("summary "))
            .with_context(|| format!("no summary from lab-flows:\n{out}"))?;
        let field = |name: &str| -> Result<u64> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .with_context(|| format!("{name} missing in {line}"))?
                .parse()
                .with_context(|| format!("{name} in {line}"))
        };
        Ok(FlowSummary {
            conns: field("conns")? as usize,
            broken: field("broken")? as usize,
            moved: field("moved")? as usize,
            gap_p50_ms: field("gap_p50_ms")?,
            gap_p99_ms: field("gap_p99_ms")?,
            gap_max_ms: field("gap_max_ms")?,
            text: out.to_string(),
        })
    }
}

/// A running lab-flows.
#[derive(Debug)]
pub struct Flows {
    child: LabChild,
}

impl Flows {
    /// Start `conns` keep-alive flows to the pair's service from the client, a
    /// request every `interval_ms` each, for `secs` seconds. lab-flows is
    /// found beside directord (the workspace build puts it there).
    pub fn start(p: &PairLab, conns: u32, interval_ms: u32, secs: u32) -> Result<Flows> {
        let bin = PathBuf::from(&p.bins.directord).with_file_name("lab-flows");
        ensure!(
            bin.exists(),
            "{} is missing: build the workspace (tests/run.sh runs cargo test --workspace)",
            bin.display()
        );
        let bin = bin.to_string_lossy().into_owned();
        let child = p.lab.spawn(
            &p.client,
            &[
                &bin,
                "--target",
                &p.target().to_string(),
                "--conns",
                &conns.to_string(),
                "--interval-ms",
                &interval_ms.to_string(),
                "--duration-s",
                &secs.to_string(),
            ],
        )?;
        Ok(Flows { child })
    }

    /// Wait (bounded) for the run to end and read its summary.
    pub fn finish(mut self, within: Duration) -> Result<FlowSummary> {
        let status = self.child.wait_timeout(within)?;
        ensure!(
            status.is_some(),
            "lab-flows did not finish within {within:?}"
        );
        FlowSummary::parse(&self.child.stdout_text())
    }
}

impl FlowSummary {
    /// Zero broken, zero moved, all `conns` there.
    pub fn all_carried_on(&self, conns: usize) -> Result<()> {
        ensure!(self.conns == conns, "{}", self.text);
        ensure!(
            self.broken == 0,
            "every flow carries on across the role changes:\n{}",
            self.text
        );
        ensure!(
            self.moved == 0,
            "no flow changes real server:\n{}",
            self.text
        );
        Ok(())
    }

    /// The gap figures, for a report line.
    pub fn gaps(&self) -> String {
        format!(
            "longest gap per flow p50 {} / p99 {} / max {} ms",
            self.gap_p50_ms, self.gap_p99_ms, self.gap_max_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_read_field_by_field() {
        let s = FlowSummary::parse(
            "conn 0 ok=10 rs=rs1\nsummary conns=2 ok=1 broken=1 moved=0 gap_p50_ms=51 \
             gap_p99_ms=460 gap_max_ms=470\n",
        )
        .unwrap();
        assert_eq!((s.conns, s.broken, s.moved), (2, 1, 0));
        assert_eq!((s.gap_p50_ms, s.gap_p99_ms, s.gap_max_ms), (51, 460, 470));
        assert!(FlowSummary::parse("no summary here").is_err());
    }
}
