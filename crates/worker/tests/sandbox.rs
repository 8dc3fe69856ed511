//! Agents and DoD commands that try to break out of their sandbox (bubblewrap), on a real dev
//! server with real git and the scripted agent, which runs the shell commands a hostile or
//! confused agent would: write and delete outside its worktree, read a secret, open a network
//! connection, fork-bomb, outlive its time limit. Each attempt must be blocked or killed, show in
//! the run, and leave the main checkout and the machine as they were.
//!
//! Where bwrap cannot run, the tests say so and skip; CI sets CHUM_REQUIRE_SANDBOX=1, which turns
//! that into a failure.

mod support;

use std::net::TcpListener;

use chum_core::config::SandboxMode;
use chum_core::proto::{Outcome, Phase};
use serde_json::{Value, json};
use support::*;

/// Whether bwrap works here; otherwise the reason is printed and the test returns early.
fn sandbox_works(h: &Harness) -> bool {
    match chum_activities::sandbox::resolve(SandboxMode::Bwrap, &h.config.sandbox) {
        Ok(_) => true,
        Err(why) => {
            assert!(
                std::env::var("CHUM_REQUIRE_SANDBOX").as_deref() != Ok("1"),
                "CHUM_REQUIRE_SANDBOX=1 but the sandbox cannot run: {why}"
            );
            eprintln!("SKIPPED: bwrap cannot run here: {why}");
            false
        }
    }
}

/// Runs the bead through the gate (approved) and returns the result and every execute and
/// run_dod activity result.
async fn run_approved(
    h: &Harness,
    name: &str,
    limits: chum_core::proto::SharkLimits,
) -> (chum_core::proto::SharkResult, Vec<Value>, Vec<Value>) {
    h.with_worker(|client| async move {
        let handle = start_shark(&client, &h.task_queue, h.input(limits)).await;
        wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
        send_approve(&handle, json!({"approved": true, "by": "sam"})).await;
        let result = finish(&handle, name).await;
        let executions = activity_results(&handle, "execute").await;
        let dods = activity_results(&handle, "run_dod").await;
        (result, executions, dods)
    })
    .await
}

fn sandboxed(options: HarnessOptions) -> HarnessOptions {
    HarnessOptions {
        extra_project_toml: format!("sandbox = \"bwrap\"\n{}", options.extra_project_toml),
        ..options
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_write_delete_read_or_connect_outside_its_worktree() {
    // Something the agent must not reach over the network, listening on the host's loopback.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let escape = format!(
        r#"M="$CHUM_TEST_HARNESS/../project"
echo pwned > "$M/pwned.txt"; echo "write-main=$?"
rm -rf "$M/.git"; echo "delete-git=$?"
rm -f "$M/calc.py"; echo "delete-main=$?"
echo pwned > /etc/chum-pwned; echo "write-etc=$?"
echo pwned > "$CHUM_TEST_HARNESS/../pwned.txt"; echo "write-harness=$?"
cat "$CHUM_TEST_HARNESS/../secret.txt" > leaked.txt; echo "read-secret=$?"
python3 -c 'import socket; socket.create_connection(("127.0.0.1", {port}), timeout=2)' 2>&1 | tail -n 1; echo "connect-done"
"#
    );
    let scenario = format!(
        "{}{}",
        planner_step(None, GOOD_PLAN, ""),
        executor_step(None, GOOD_CALC, &format!("shell = '''\n{escape}'''\n"))
    );
    let h = &Harness::start(
        "sandbox-escape",
        sandboxed(HarnessOptions {
            scenario,
            ..Default::default()
        }),
    )
    .await;
    if !sandbox_works(h) {
        return;
    }
    let secret = "s3cret-token-4f1d9";
    std::fs::write(h.dir.path().join("secret.txt"), secret).unwrap();

    let (result, executions, dods) = run_approved(h, "sandbox_escape", limits()).await;
    // The work itself was fine: it is integrated, through the gates, sandboxed.
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let agent = &executions[0]["agent"];
    assert!(agent["sandbox"].as_str().unwrap().starts_with("bwrap ("), "{agent}");
    assert!(
        dods[0]["sandbox"].as_str().unwrap().starts_with("bwrap ("),
        "{}",
        dods[0]
    );

    // What the agent's shell saw, in its own answer (the run's record of the attempts).
    let answer = std::fs::read_to_string(agent["stdout_artifact"].as_str().unwrap()).unwrap();
    for refused in ["write-main=2", "write-etc=2", "write-harness=2", "read-secret=1"] {
        assert!(answer.contains(refused), "{refused} missing from {answer}");
    }
    assert!(answer.contains("Read-only file system"), "{answer}");
    assert!(
        !answer.contains("delete-git=0"),
        "the repository's .git was deletable: {answer}"
    );
    assert!(
        answer.contains("Network is unreachable") || answer.contains("Connection refused"),
        "{answer}"
    );
    assert!(!answer.contains(secret));

    // And the world outside is as it was.
    assert!(!h.repo.join("pwned.txt").exists());
    assert!(!std::path::Path::new("/etc/chum-pwned").exists());
    assert!(!h.dir.path().join("pwned.txt").exists());
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the agent reached the host's network"
    );
    let leaked = git(&h.repo, &["show", "main:leaked.txt"]);
    assert!(!leaked.contains(secret), "the secret reached the repository");
    assert_eq!(git(&h.repo, &["show", "main:calc.py"]), GOOD_CALC.trim_end());
    assert_eq!(git(&h.repo, &["fsck", "--no-progress"]), "");
    assert!(h.commits_on("main") >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_hits_the_process_limit_and_dies_with_its_time_limit() {
    let Some(probe) = chum_activities::sandbox::PidsLimit::create(64) else {
        assert!(
            std::env::var("CHUM_REQUIRE_SANDBOX").as_deref() != Ok("1"),
            "CHUM_REQUIRE_SANDBOX=1 but no pids cgroup can be made here"
        );
        eprintln!("SKIPPED: no writable pids cgroup here, so a fork bomb would only meet the timeout");
        return;
    };
    drop(probe);
    let scenario = format!(
        "{}[[step]]\nrole = \"executor\"\nattempt = 1\nshell = '''\nf() {{ f | f & }}; f; sleep 600\n'''\nanswer = \"never\"\n\n{}",
        planner_step(None, GOOD_PLAN, ""),
        executor_step(Some(2), GOOD_CALC, "")
    );
    let h = &Harness::start(
        "sandbox-forkbomb",
        sandboxed(HarnessOptions {
            scenario,
            sandbox_toml: "max_processes = 64".into(),
            ..Default::default()
        }),
    )
    .await;
    if !sandbox_works(h) {
        return;
    }
    let limits = chum_core::proto::SharkLimits {
        agent_timeout_secs: 4,
        ..limits()
    };
    let (result, executions, _) = run_approved(h, "sandbox_fork_bomb", limits).await;
    assert_eq!(
        result.outcome(),
        Outcome::Integrated,
        "the next attempt recovers: {result:?}"
    );
    let bomb = &executions[0];
    assert!(
        bomb["problem"].as_str().unwrap().contains("did not finish within 4s"),
        "{bomb}"
    );
    assert_eq!(bomb["agent"]["process_limit_hit"], true, "{bomb}");
    let failed = result
        .gate_results
        .iter()
        .find(|g| g.gate == "execute" && !g.passed)
        .expect("the killed attempt is in the run");
    assert!(failed.excerpt.contains("killed"), "{}", failed.excerpt);
    h.assert_agent_processes_gone("executor", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definition_of_done_commands_are_sandboxed_too() {
    // The DoD runs agent-written code: a command writing outside the worktree fails the gate.
    let h = &Harness::start(
        "sandbox-dod",
        sandboxed(HarnessOptions {
            scenario: good_work_scenario(""),
            dod: vec![
                "python3 -m unittest -q".into(),
                "echo pwned > {repo}/dod-pwned.txt".into(),
            ],
            ..Default::default()
        }),
    )
    .await;
    if !sandbox_works(h) {
        return;
    }
    let limits = chum_core::proto::SharkLimits {
        max_attempts: 1,
        ..limits()
    };
    let (result, _, dods) = run_approved(h, "sandbox_dod", limits).await;
    assert_eq!(result.outcome(), Outcome::Escalated, "{result:?}");
    assert!(
        dods[0]["sandbox"].as_str().unwrap().starts_with("bwrap ("),
        "{}",
        dods[0]
    );
    let dod = result
        .gate_results
        .iter()
        .find(|g| g.gate == "dod")
        .expect("the DoD ran");
    assert!(!dod.passed);
    assert!(dod.excerpt.contains("Read-only file system"), "{}", dod.excerpt);
    assert!(!h.repo.join("dod-pwned.txt").exists());
}
