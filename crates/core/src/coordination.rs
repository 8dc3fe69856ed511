//! Who of a project's Sharks may work on the code now: execution slots and leases on the files a
//! plan names. Pure: the Coordinator workflow keeps the lists and asks this.

use crate::proto::{LeaseMode, QueueEntry, SlotRequest};

/// Whether two queue entries are the same run of the same Shark (a bead started again is another
/// run, with its own place in line).
pub fn same_run(a: &QueueEntry, b: &QueueEntry) -> bool {
    a.workflow_id == b.workflow_id && a.run_id == b.run_id
}

/// Whether two planned paths touch the same files: the same path, or one a directory of the other
/// (`src` and `src/lib.rs`). Paths are compared as the plan wrote them, with `./` and trailing
/// slashes ignored.
pub fn paths_overlap(a: &str, b: &str) -> bool {
    let norm = |p: &str| -> String {
        let p = p.trim().trim_start_matches("./").trim_end_matches('/');
        p.to_string()
    };
    let (a, b) = (norm(a), norm(b));
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let inside = |child: &str, dir: &str| {
        child.len() > dir.len() && child.starts_with(dir) && child.as_bytes()[dir.len()] == b'/'
    };
    a == b || inside(&a, &b) || inside(&b, &a)
}

/// The first planned file of `files` that overlaps one of `held`, as (wanted, held).
pub fn first_overlap<'a>(files: &'a [String], held: &'a [String]) -> Option<(&'a str, &'a str)> {
    files.iter().find_map(|f| {
        held.iter()
            .find(|h| paths_overlap(f, h))
            .map(|h| (f.as_str(), h.as_str()))
    })
}

/// Why a request cannot have a slot now, or `None` when it can.
pub fn why_waiting(request: &SlotRequest, executing: &[QueueEntry], concurrency: u32) -> Option<String> {
    let concurrency = concurrency.max(1) as usize;
    if executing.len() >= concurrency {
        let beads: Vec<&str> = executing.iter().map(|e| e.bead_id.as_str()).collect();
        return Some(format!(
            "all {concurrency} execution slot(s) are taken ({})",
            beads.join(", ")
        ));
    }
    if request.leases() == LeaseMode::Off {
        return None;
    }
    let files = &request.entry.as_ref()?.files;
    executing.iter().find_map(|holder| {
        first_overlap(files, &holder.files).map(|(wanted, held)| {
            format!(
                "{wanted} overlaps {held}, leased by {} until its run ends",
                holder.bead_id
            )
        })
    })
}

/// Which waiting requests get a slot now, in order: each in turn if it fits beside those already
/// executing and those granted before it (a request blocked by a lease does not hold back the
/// ones behind it). Returns their positions in `waiting`.
pub fn grants(waiting: &[SlotRequest], executing: &[QueueEntry], concurrency: u32) -> Vec<usize> {
    let mut holding: Vec<QueueEntry> = executing.to_vec();
    let mut granted = Vec::new();
    for (i, request) in waiting.iter().enumerate() {
        if why_waiting(request, &holding, concurrency).is_none() {
            holding.push(request.entry.clone().unwrap_or_default());
            granted.push(i);
        }
    }
    granted
}

/// Files an execution changed outside the files its plan named (each checked against every
/// planned path, so a planned directory covers what is inside it).
pub fn outside_plan(changed: &[String], planned: &[String]) -> Vec<String> {
    changed
        .iter()
        .filter(|c| {
            !planned
                .iter()
                .any(|p| paths_overlap(c, p) && c.len() >= p.trim_end_matches('/').len())
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bead: &str, files: &[&str]) -> QueueEntry {
        QueueEntry {
            bead_id: bead.into(),
            workflow_id: format!("shark-demo-{bead}"),
            files: files.iter().map(|f| f.to_string()).collect(),
            ..QueueEntry::default()
        }
    }

    fn request(bead: &str, files: &[&str], leases: LeaseMode) -> SlotRequest {
        SlotRequest {
            entry: Some(entry(bead, files)),
            concurrency: 2,
            leases: leases as i32,
        }
    }

    #[test]
    fn paths_overlap_by_name_and_by_directory() {
        assert!(paths_overlap("calc.py", "./calc.py"));
        assert!(paths_overlap("src", "src/lib.rs") && paths_overlap("src/lib.rs", "src/"));
        assert!(!paths_overlap("src/lib.rs", "src/main.rs"));
        assert!(!paths_overlap("src", "srcs/x.rs"), "a prefix that is not a directory");
        assert!(!paths_overlap("", "calc.py"));
    }

    #[test]
    fn a_slot_waits_for_capacity_and_for_leases_on_overlapping_files() {
        let busy = [entry("tk-1", &["calc.py"])];
        assert_eq!(
            why_waiting(&request("tk-2", &["pairs.py"], LeaseMode::On), &busy, 2),
            None
        );
        let why = why_waiting(&request("tk-2", &["calc.py", "x.py"], LeaseMode::On), &busy, 2).unwrap();
        assert_eq!(why, "calc.py overlaps calc.py, leased by tk-1 until its run ends");
        assert_eq!(
            why_waiting(&request("tk-2", &["calc.py"], LeaseMode::Off), &busy, 2),
            None
        );
        let full = why_waiting(&request("tk-2", &["y.py"], LeaseMode::On), &busy, 1).unwrap();
        assert!(full.contains("all 1 execution slot(s) are taken (tk-1)"), "{full}");
    }

    #[test]
    fn grants_go_in_order_and_a_blocked_request_does_not_hold_back_the_next() {
        let busy = [entry("tk-1", &["calc.py"])];
        let waiting = [
            request("tk-2", &["calc.py"], LeaseMode::On),
            request("tk-3", &["pairs.py"], LeaseMode::On),
            request("tk-4", &["pairs.py"], LeaseMode::On),
        ];
        assert_eq!(grants(&waiting, &busy, 3), [1], "tk-4 waits for tk-3 granted before it");
        assert_eq!(grants(&waiting, &busy, 1), Vec::<usize>::new());
    }

    #[test]
    fn files_outside_the_plan_are_named() {
        let planned = ["calc.py".to_string(), "tests".to_string()];
        let changed = ["calc.py", "tests/test_calc.py", "setup.py"].map(String::from);
        assert_eq!(outside_plan(&changed, &planned), ["setup.py"]);
    }
}
