//! Agents and DoD commands that try to break out of their sandbox (bubblewrap), on a real dev
//! server with real git and the scripted agent, which runs the shell commands a hostile or
//! confused agent would: write and delete outside its worktree, read a secret, open a network
//! connection, fork-bomb, outlive its time limit. Each attempt must be blocked or killed, show in
//! the run, and leave the main checkout and the machine as they were.
//!
//! Where bwrap cannot run, the tests say so and skip; CI sets CHUM_REQUIRE_SANDBOX=1, which turns
//! that into a failure.

use chum_core::proto::GateName;
use std::net::TcpListener;

use chum_core::proto::{Outcome, Phase};
use chum_testkit::*;
use serde_json::{Value, json};

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
    options.with_config(|c| c.project().sandbox = Some("bwrap".into()))
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
    let h = &Harness::start(
        "sandbox-escape",
        sandboxed(HarnessOptions::with_steps(good_work_with(|s| s.shell(&escape)))),
    )
    .await;
    if !h.sandbox_works() {
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
    // Sound objects and refs. (The run cleaned up its candidate refs, so the commits that kept the
    // reviewed trees are dangling until git prunes them: normal, and not what this checks.)
    assert_eq!(git(&h.repo, &["fsck", "--no-progress", "--no-dangling"]), "");
    assert!(h.commits_on("main") >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_hits_the_process_limit_and_dies_with_its_time_limit() {
    let probe = chum_activities::exec::RunCgroups::create(chum_activities::exec::RunLimits {
        max_processes: 64,
        resources: Default::default(),
    });
    if !probe.enforced().processes {
        assert!(
            std::env::var("CHUM_REQUIRE_SANDBOX").as_deref() != Ok("1"),
            "CHUM_REQUIRE_SANDBOX=1 but no pids cgroup can be made here"
        );
        eprintln!("SKIPPED: no writable pids cgroup here, so a fork bomb would only meet the timeout");
        return;
    }
    drop(probe);
    let steps = vec![
        planner(GOOD_PLAN),
        Step::executor()
            .attempt(1)
            // `exec`: the shell itself becomes the sleep, so a full process table cannot stop it.
            .shell("f() { f | f & }; f; exec sleep 600\n")
            .answer("never"),
        calc_executor(GOOD_CALC).attempt(2),
    ];
    let h = &Harness::start(
        "sandbox-forkbomb",
        sandboxed(HarnessOptions::with_steps(steps).with_config(|c| c.sandbox.max_processes = Some(64))),
    )
    .await;
    if !h.sandbox_works() {
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
        .find(|g| g.gate() == GateName::Execute && !g.passed)
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
            steps: good_work(),
            dod: vec![
                "python3 -m unittest -q".into(),
                "echo pwned > {repo}/dod-pwned.txt".into(),
            ],
            ..Default::default()
        }),
    )
    .await;
    if !h.sandbox_works() {
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
    let dod = first_gate(&result, GateName::Dod).expect("the DoD ran");
    assert!(!dod.passed);
    assert!(dod.excerpt.contains("Read-only file system"), "{}", dod.excerpt);
    assert!(!h.repo.join("dod-pwned.txt").exists());
}

/// The JSON `result` of an agent run's stdout (the scripted agent appends its shell's output).
fn agent_result(agent: &Value) -> String {
    let text = std::fs::read_to_string(agent["stdout_artifact"].as_str().unwrap()).unwrap();
    let answer: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    answer["result"].as_str().unwrap_or_default().to_string()
}

/// A sandboxed agent whose provider may reach one host (an HTTP server on this machine, named by
/// address and port) tries every other way out: Temporal (to approve another Shark waiting at its
/// gate), CHUM's API (with a token it should not have), hosts and ports not on its list, loopback,
/// an IP literal, DNS, ICMP; and reads its environment. Only the listed host answers; the Shark
/// at its gate is still waiting, nobody decided; each refusal is logged, in the run and in
/// /metrics. The worker is the real binary, started with API tokens in its environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reaches_its_allowed_host_and_not_temporal_the_api_or_the_workers_secrets() {
    let ip = host_address();
    let allowed = HttpStub::start(ip, "allowed-host-answered");
    let allowed_port = allowed.addr.port();
    let forbidden = std::net::TcpListener::bind((ip, 0)).unwrap();
    forbidden.set_nonblocking(true).unwrap();
    let forbidden_port = forbidden.local_addr().unwrap().port();
    let api_port = free_port();
    let token = "alice-token-for-the-escape-test";
    let secret = "cloud-secret-4f1d9e";
    // `__TEMPORAL_PORT__` is filled in once the harness has chosen the dev server's port.
    let escape = format!(
        r#"T=__TEMPORAL_PORT__
echo "== signal"; temporal workflow signal --address 127.0.0.1:$T --workflow-id shark-demo-tk-3 --name approve --input '{{"approved": true, "by": "agent"}}' > "$TMPDIR/signal.out" 2>&1; echo "signal-exit=$?"; tail -n 2 "$TMPDIR/signal.out"
echo "== api"; curl -s -m 5 -o /dev/null -w 'api-status=%{{http_code}}\n' -X POST -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{{"by": "agent"}}' http://127.0.0.1:{api_port}/beads/tk-3/approve; echo "api-exit=$?"
curl -s -m 5 --noproxy '*' http://127.0.0.1:{api_port}/health >/dev/null 2>&1; echo "api-direct-exit=$?"
echo "== env"; env | sort | sed 's/^/ENV /'
echo "== allowed"; curl -s -m 5 http://{ip}:{allowed}/ ; echo; echo "allowed-exit=$?"
echo "== not listed"; curl -s -m 5 -o /dev/null -w 'unlisted-status=%{{http_code}}\n' http://{ip}:{forbidden_port}/
curl -s -m 5 -p -o /dev/null http://127.0.0.1:$T/ 2>&1; echo "connect-temporal-exit=$?"
curl -s -m 5 -p -o /dev/null http://127.0.0.1:{api_port}/ 2>&1; echo "connect-loopback-exit=$?"
curl -s -m 5 -p -o /dev/null http://203.0.113.7:443/ 2>&1; echo "connect-literal-exit=$?"
python3 -c "import socket; socket.create_connection(('127.0.0.1', $T), timeout=3)" 2>&1 | tail -n 1; echo "direct-loopback"
python3 -c 'import socket; socket.create_connection(("{ip}", {forbidden_port}), timeout=3)' 2>&1 | tail -n 1; echo "direct-host"
echo "== dns"; getent hosts chum-exfil-test.example.com; echo "dns-exit=$?"
echo "== icmp"; python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); s.sendto(b"\x08\x00\x00\x00\x00\x00\x00\x00", ("192.0.2.1", 0))' > "$TMPDIR/icmp.out" 2>&1; echo "icmp-exit=$?"; tail -n 1 "$TMPDIR/icmp.out"
"#,
        allowed = allowed.addr.port(),
    );
    // Bead tk-3 plans and waits at its gate; bead tk-1's executor attacks it.
    let h = &Harness::start(
        "sandbox-egress",
        sandboxed(
            HarnessOptions::with_steps(vec![
                planner(GOOD_PLAN),
                calc_executor(GOOD_CALC).bead("tk-1").shell(&escape),
            ])
            .with_config(move |c| {
                for provider in c.providers() {
                    provider.allow_hosts = vec![format!("{ip}:{}", allowed_port), "index.crates.io".into()];
                }
            }),
        ),
    )
    .await;
    if !h.sandbox_works() {
        return;
    }
    let temporal_port: u16 = h.address.rsplit(':').next().unwrap().parse().unwrap();
    let scenario_path = h.dir.path().join("scenario.toml");
    let scenario = std::fs::read_to_string(&scenario_path).unwrap();
    std::fs::write(
        &scenario_path,
        scenario.replace("__TEMPORAL_PORT__", &temporal_port.to_string()),
    )
    .unwrap();
    let config = h.write_config(&h.config_file);
    let worker = WorkerProcess::start_with(
        &config,
        &[
            ("CHUM__API__BIND", &format!("127.0.0.1:{api_port}")),
            ("CHUM_API_TOKENS", &format!("alice:{token}")),
            ("CHUM_ESCAPE_TEST_CLOUD_KEY", secret),
        ],
    );
    worker.wait_for_line("worker polling", 0).await;
    let client = h.client();
    let waiting = start_shark(
        &client,
        &h.task_queue,
        chum_core::proto::SharkInput {
            bead_id: "tk-3".into(),
            ..h.input(limits())
        },
    )
    .await;
    wait_for_phase(&waiting, Phase::AwaitingApproval, 1).await;
    let attacker = start_shark(&client, &h.task_queue, h.input(limits())).await;
    wait_for_phase(&attacker, Phase::AwaitingApproval, 1).await;
    send_approve(&attacker, json!({"approved": true, "by": "sam"})).await;
    let result = finish(&attacker, "sandbox_egress").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let executions = activity_results(&attacker, "execute").await;
    let agent = &executions[0]["agent"];
    let seen = agent_result(agent);

    // The Shark at its gate is still there, and no decision reached it.
    let still = status(&waiting).await;
    assert_eq!(still.phase(), Phase::AwaitingApproval, "{still:?}");
    assert!(still.rejected_signals.is_empty(), "a signal got through: {still:?}");
    assert!(still.decisions.is_empty(), "{still:?}");
    // Temporal and the API were out of reach, with or without the proxy.
    assert!(!seen.contains("Signal workflow succeeded"), "{seen}");
    assert!(seen.contains("api-status=403"), "the proxy refuses the API: {seen}");
    assert!(!seen.contains("api-direct-exit=0"), "{seen}");
    let audit = std::fs::read_to_string(&h.config.api.audit_log).unwrap_or_default();
    assert!(audit.is_empty(), "the API recorded a decision: {audit}");
    // Its environment holds what was allowed and nothing of the worker's.
    let env: Vec<&str> = seen.lines().filter_map(|l| l.strip_prefix("ENV ")).collect();
    assert!(!env.is_empty(), "{seen}");
    for var in &env {
        let name = var.split('=').next().unwrap();
        let allowed_name = [
            "PATH", "LANG", "LC_ALL", "TERM", "HOME", "TMPDIR", "PWD", "SHLVL", "_", "OLDPWD",
        ]
        .contains(&name)
            || name.starts_with("CHUM_")
            || name.to_ascii_uppercase().ends_with("_PROXY");
        assert!(allowed_name, "{name} reached the agent: {var}");
    }
    assert!(
        !seen.contains("CHUM_API_TOKENS") && !seen.contains(token) && !seen.contains(secret),
        "{seen}"
    );
    // The listed host answered through the proxy; nothing else did.
    assert!(seen.contains("allowed-host-answered"), "{seen}");
    assert!(allowed.hits() >= 1);
    assert!(seen.contains("unlisted-status=403"), "{seen}");
    for how in ["connect-temporal", "connect-loopback", "connect-literal"] {
        assert!(
            seen.contains(&format!("{how}-exit=")) && !seen.contains(&format!("{how}-exit=0")),
            "{how}: {seen}"
        );
    }
    assert!(
        seen.contains("signal-exit=") && !seen.contains("signal-exit=0"),
        "{seen}"
    );
    assert!(
        matches!(forbidden.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the unlisted port was reached"
    );
    assert!(
        seen.contains("Network is unreachable") || seen.contains("Connection refused"),
        "{seen}"
    );
    assert!(
        !seen.contains("dns-exit=0"),
        "a name resolved inside the sandbox: {seen}"
    );
    assert!(seen.contains("icmp-exit=") && !seen.contains("icmp-exit=0"), "{seen}");
    // Every refusal is in the run, the run's egress log, the worker's log and /metrics.
    let refused: Vec<String> = agent["egress_refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for expected in [
        format!("127.0.0.1:{temporal_port}: "),
        format!("127.0.0.1:{api_port}: "),
        format!("{ip}:{forbidden_port}: "),
        "203.0.113.7:443: an IP address that no allow_hosts entry names".to_string(),
    ] {
        assert!(
            refused.iter().any(|r| r.starts_with(&expected)),
            "{expected} missing from {refused:?}"
        );
    }
    let log_line = worker.wait_for_line("egress refused", 0).await;
    assert_eq!(log_line["span"]["bead"], "tk-1", "{log_line}");
    let metrics = http_client()
        .get(format!("http://127.0.0.1:{api_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"chum_egress_refused_total{client="scripted-a",reason="control_plane"}"#),
        "{metrics}"
    );
    worker.stop();
}

/// An agent that allocates far past `[sandbox] max_memory` is killed by the kernel at the limit;
/// its attempt fails with a reason that says so and the next attempt integrates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_killed_at_its_limit_and_the_next_attempt_integrates() {
    let probe = chum_activities::exec::RunCgroups::create(chum_activities::exec::RunLimits {
        max_processes: 64,
        resources: chum_core::config::ResourceLimits {
            max_memory: Some(64 << 20),
            cpu_quota: None,
        },
    });
    if !probe.enforced().memory {
        assert!(
            std::env::var("CHUM_REQUIRE_SANDBOX").as_deref() != Ok("1"),
            "CHUM_REQUIRE_SANDBOX=1 but no memory cgroup can be made here"
        );
        eprintln!("SKIPPED: no writable memory cgroup here");
        return;
    }
    drop(probe);
    let hog = "python3 -c 'b = b\"x\" * (400 * 1024 * 1024); print(len(b))'; echo \"hog-exit=$?\"";
    let steps = vec![
        planner(GOOD_PLAN),
        calc_executor(GOOD_CALC).attempt(1).shell(hog),
        calc_executor(GOOD_CALC).attempt(2),
    ];
    let h = &Harness::start(
        "sandbox-memory",
        sandboxed(HarnessOptions::with_steps(steps).with_config(|c| {
            c.sandbox.max_memory = Some("64MiB".into());
            c.sandbox.cpu_quota = Some(1.0);
        })),
    )
    .await;
    if !h.sandbox_works() {
        return;
    }
    let (result, executions, _) = run_approved(h, "sandbox_memory_hog", limits()).await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let hog = &executions[0];
    assert_eq!(hog["agent"]["memory_limit_hit"], true, "{hog}");
    assert!(
        hog["problem"]
            .as_str()
            .unwrap()
            .contains("killed at its memory limit ([sandbox] max_memory = 64 MiB)"),
        "{hog}"
    );
    assert_eq!(executions[1]["agent"]["memory_limit_hit"], false);
    assert!(
        executions[1]["problem"].as_str().unwrap().is_empty(),
        "{}",
        executions[1]
    );
    assert_eq!(git(&h.repo, &["show", "main:calc.py"]), GOOD_CALC.trim_end());
}

/// The agent points its worktree's `.git` at a git directory of its own, with a `post-commit`
/// hook and a `core.fsmonitor` command that would each leave a marker outside the worktree if
/// CHUM's git ran them. None appears; the attempt fails saying what was tampered with; the next
/// attempt, in a fresh worktree, integrates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_rewrites_its_worktrees_git_pointer_gets_nothing_run() {
    let markers = tempfile::tempdir().unwrap();
    let hook_marker = markers.path().join("hook-ran");
    let fsmonitor_marker = markers.path().join("fsmonitor-ran");
    let tamper = format!(
        r#"git init -q evil
printf '#!/bin/sh\ntouch {hook}\n' > evil/.git/hooks/post-commit
chmod +x evil/.git/hooks/post-commit
cp evil/.git/hooks/post-commit evil/.git/hooks/pre-commit
git -C evil config core.fsmonitor 'touch {fsmonitor}; false'
printf 'gitdir: %s/evil/.git\n' "$PWD" > .git
cat .git"#,
        hook = hook_marker.display(),
        fsmonitor = fsmonitor_marker.display()
    );
    let steps = vec![
        planner(GOOD_PLAN),
        calc_executor(GOOD_CALC).attempt(1).shell(&tamper),
        calc_executor(GOOD_CALC).attempt(2),
    ];
    let h = &Harness::start("sandbox-git-tamper", sandboxed(HarnessOptions::with_steps(steps))).await;
    if !h.sandbox_works() {
        return;
    }
    let (result, executions, _) = run_approved(h, "sandbox_git_tamper", limits()).await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let tampered = executions[0]["problem"].as_str().unwrap();
    assert!(
        tampered.contains("was tampered with")
            && tampered.contains("its .git points to")
            && tampered.contains("/evil/.git"),
        "{tampered}"
    );
    assert!(!hook_marker.exists(), "the planted hook ran");
    assert!(!fsmonitor_marker.exists(), "the planted fsmonitor ran");
    let files = git(&h.repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(!files.contains("evil"), "{files}");
    // Sound objects and refs. (The run cleaned up its candidate refs, so the commits that kept the
    // reviewed trees are dangling until git prunes them: normal, and not what this checks.)
    assert_eq!(git(&h.repo, &["fsck", "--no-progress", "--no-dangling"]), "");
}
