//! The three operator commands over any [`System`]: observe, plan, print,
//! apply, record. Printing goes to a writer so tests can read it.

use std::io::Write;
use std::path::Path;

use super::Error;
use super::check::{CheckRequest, Finding, Severity, check, healthy};
use super::plan::{Plan, Request, plan_setup, plan_undo};
use super::state::State;
use super::system::System;

/// What a `setup` or `undo` run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The plan it carried out.
    pub plan: Plan,
}

impl Outcome {
    /// Number of changes made.
    pub fn changed(&self) -> usize {
        self.plan.changes.len()
    }
}

fn print_plan_context(out: &mut dyn Write, plan: &Plan) {
    for u in &plan.unchanged {
        let _ = writeln!(out, "unchanged: {u}");
    }
}

/// `setup`: plans against the current state, makes each change, and records
/// it in the state file as soon as it is made (so `undo` can reverse a run
/// that failed half-way).
pub fn setup(
    sys: &mut dyn System,
    req: &Request,
    state_path: &Path,
    out: &mut dyn Write,
) -> Result<Outcome, Error> {
    let obs = sys.observe()?;
    let target = req.target(&obs)?;
    let vips: Vec<String> = req.vips.iter().map(|v| v.to_string()).collect();
    let _ = writeln!(
        out,
        "setup: mode {}, VIP {} on {}{}",
        req.mode,
        vips.join(", "),
        target.dev,
        match target.tunnel {
            Some(t) => format!(" ({} device)", t.as_str()),
            None => String::new(),
        }
    );
    let plan = plan_setup(req, &obs)?;
    print_plan_context(out, &plan);
    let mut state = State::load(state_path)?;
    for change in &plan.changes {
        let _ = out.flush();
        sys.apply(change)?;
        state.record(change);
        state.store(state_path)?;
    }
    for n in &plan.notes {
        let _ = writeln!(out, "note: {n}");
    }
    if plan.changes.is_empty() {
        let _ = writeln!(out, "nothing to change: already set up");
    } else {
        let _ = writeln!(
            out,
            "{} change(s) made; undo with `dirctl realserver undo` (state in {})",
            plan.changes.len(),
            state_path.display()
        );
    }
    Ok(Outcome { plan })
}

/// `undo`: reverses what the state file says setup changed, then removes it.
pub fn undo(
    sys: &mut dyn System,
    state_path: &Path,
    out: &mut dyn Write,
) -> Result<Outcome, Error> {
    let state = State::load(state_path)?;
    if state.is_empty() {
        let _ = writeln!(
            out,
            "nothing to undo: no setup recorded in {}",
            state_path.display()
        );
        return Ok(Outcome {
            plan: Plan::default(),
        });
    }
    let obs = sys.observe()?;
    let plan = plan_undo(&state, &obs)?;
    let _ = writeln!(
        out,
        "undo: reversing the setup recorded in {}",
        state_path.display()
    );
    print_plan_context(out, &plan);
    for change in &plan.changes {
        let _ = out.flush();
        sys.apply(change)?;
    }
    for n in &plan.notes {
        let _ = writeln!(out, "note: {n}");
    }
    State::default().store(state_path)?;
    let _ = writeln!(
        out,
        "{} change(s) made; state file removed",
        plan.changes.len()
    );
    Ok(Outcome { plan })
}

/// `check`: prints one line per finding and a summary; returns the
/// findings (healthy when none is a failure).
pub fn run_check(
    sys: &mut dyn System,
    req: &CheckRequest,
    out: &mut dyn Write,
) -> Result<Vec<Finding>, Error> {
    let obs = sys.observe()?;
    let mut req = req.clone();
    if let Some((addr, _)) = req.director {
        req.director = Some((addr, sys.route_to(addr)?));
    }
    let findings = check(&req, &obs);
    for f in &findings {
        let _ = writeln!(out, "{f}");
    }
    let count = |s| findings.iter().filter(|f| f.severity == s).count();
    let _ = writeln!(
        out,
        "check: {} ok, {} warning(s), {} failure(s): {}",
        count(Severity::Ok),
        count(Severity::Warn),
        count(Severity::Fail),
        if healthy(&findings) {
            "this real server is ready"
        } else {
            "this real server would break"
        }
    );
    Ok(findings)
}
