//! Spending caps and provider limits, applied around every agent run.
//!
//! Caps are checked before an agent starts, against the usage the agents themselves reported
//! (stored per run in `agent_usage`): per bead (all its runs), per project per UTC day, and
//! globally per UTC day, each in USD and in tokens. The next call's cost is unknown, so a cap is
//! reached when the spend so far is at or over it. Provider limits (runs at once, least time
//! between starts) hold within one worker process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chum_core::config::{Budget, ChumConfig, ProviderConfig, Role};
use chum_core::proto::{AgentUsage, RunRef};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::agent::AgentSetupError;
use crate::store::{Spent, Store, StoreError, StoreTarget, UsageFilter, UsageRecord};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Milliseconds at the start of the UTC day of `now_ms`.
pub fn utc_day_start(now_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(DAY_MS)
}

fn over(what: &str, spent: Spent, usd_cap: f64, token_cap: u64, usd_key: &str, token_key: &str) -> Option<String> {
    if usd_cap > 0.0 && spent.cost_usd >= usd_cap {
        return Some(format!(
            "{what} has spent ${:.4} of its ${usd_cap:.2} cap ([budget] {usd_key})",
            spent.cost_usd
        ));
    }
    if token_cap > 0 && spent.tokens >= token_cap {
        return Some(format!(
            "{what} has used {} of its {token_cap} tokens ([budget] {token_key})",
            spent.tokens
        ));
    }
    None
}

/// Why no agent run may start now.
#[derive(Debug, thiserror::Error)]
pub enum BudgetStop {
    /// A cap is reached: which, how far, and the key that sets it.
    #[error("{0}")]
    Reached(String),
    /// What was spent could not be read: no spend is allowed unchecked (worth a retry).
    #[error("cannot read what was spent: {0}")]
    Unreadable(#[from] StoreError),
}

/// Whether the budget has room for another agent run of `bead` in `project`. `Err` says which cap
/// is reached, or that the store could not be read.
pub fn affordable(budget: &Budget, store: &Store, project: &str, bead: &str, now_ms: i64) -> Result<(), BudgetStop> {
    let day = utc_day_start(now_ms);
    let sum = |filter: UsageFilter<'_>| store.spent(filter);
    if !bead.is_empty() && (budget.per_bead_usd > 0.0 || budget.per_bead_tokens > 0) {
        let spent = sum(UsageFilter {
            project: Some(project),
            bead_id: Some(bead),
            since_ms: None,
        })?;
        if let Some(why) = over(
            &format!("bead {bead}"),
            spent,
            budget.per_bead_usd,
            budget.per_bead_tokens,
            "per_bead_usd",
            "per_bead_tokens",
        ) {
            return Err(BudgetStop::Reached(why));
        }
    }
    if budget.project_daily_usd > 0.0 || budget.project_daily_tokens > 0 {
        let spent = sum(UsageFilter {
            project: Some(project),
            bead_id: None,
            since_ms: Some(day),
        })?;
        if let Some(why) = over(
            &format!("project {project} today"),
            spent,
            budget.project_daily_usd,
            budget.project_daily_tokens,
            "project_daily_usd",
            "project_daily_tokens",
        ) {
            return Err(BudgetStop::Reached(why));
        }
    }
    if budget.global_daily_usd > 0.0 || budget.global_daily_tokens > 0 {
        let spent = sum(UsageFilter {
            since_ms: Some(day),
            ..UsageFilter::default()
        })?;
        if let Some(why) = over(
            "CHUM today",
            spent,
            budget.global_daily_usd,
            budget.global_daily_tokens,
            "global_daily_usd",
            "global_daily_tokens",
        ) {
            return Err(BudgetStop::Reached(why));
        }
    }
    Ok(())
}

/// A run's budget reservation: counted against the caps from before its agent starts until
/// [`Reservation::settle`] puts the real figures in its place; dropped unsettled (the run never
/// started), it is removed.
pub struct Reservation {
    store: StoreTarget,
    id: i64,
    settled: bool,
}

impl Reservation {
    pub fn settle(mut self, record: &UsageRecord) -> Result<(), StoreError> {
        self.settled = true;
        Store::at(&self.store)?.settle_usage(self.id, record)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled
            && let Err(e) = Store::at(&self.store).and_then(|s| s.drop_reservation(self.id))
        {
            tracing::warn!("a budget reservation was not removed: {e}");
        }
    }
}

/// Checks every cap and reserves this run's typical cost (its provider's average for the role)
/// in one transaction. `None` when no cap is set. A reservation a dead worker left stops counting
/// after twice the agent timeout.
pub fn reserve(
    config: &ChumConfig,
    provider: &ProviderConfig,
    role: Role,
    run: &RunRef,
    now_ms: i64,
) -> Result<Option<Reservation>, AgentSetupError> {
    if !has_caps(&config.budget) {
        return Ok(None);
    }
    let target = StoreTarget::of(config);
    let storage = |e: StoreError| AgentSetupError::Storage(format!("cannot check the budget: {e}"));
    let mut store = Store::at(&target).map_err(storage)?;
    let (cost_usd, tokens) = store.typical_usage(&provider.name, role.as_str()).map_err(storage)?;
    let estimate = UsageRecord {
        project: run.project.clone(),
        bead_id: run.bead_id.clone(),
        workflow_id: run.workflow_id.clone(),
        run_id: run.run_id.clone(),
        role: role.to_string(),
        provider: provider.name.clone(),
        input_tokens: tokens,
        cost_usd,
        created_ms: now_ms,
        estimated: true,
        ..UsageRecord::default()
    };
    let stale_before = now_ms - 2 * config.limits.agent_timeout.as_millis() as i64;
    let id = store
        .reserve_usage(&estimate, stale_before, |s| {
            affordable(&config.budget, s, &run.project, &run.bead_id, now_ms)
        })
        .map_err(storage)?
        .map_err(|stop| match stop {
            BudgetStop::Reached(why) => AgentSetupError::Budget(why),
            BudgetStop::Unreadable(e) => storage(e),
        })?;
    Ok(Some(Reservation {
        store: target,
        id,
        settled: false,
    }))
}

/// Whether any cap is set (otherwise no check is needed).
pub fn has_caps(b: &Budget) -> bool {
    b.per_bead_usd > 0.0
        || b.per_bead_tokens > 0
        || b.project_daily_usd > 0.0
        || b.project_daily_tokens > 0
        || b.global_daily_usd > 0.0
        || b.global_daily_tokens > 0
}

/// One provider's limits in this process.
struct ProviderGate {
    slots: Option<Arc<Semaphore>>,
    next_start: Mutex<Option<Instant>>,
}

fn gates() -> &'static Mutex<HashMap<String, Arc<ProviderGate>>> {
    static GATES: OnceLock<Mutex<HashMap<String, Arc<ProviderGate>>>> = OnceLock::new();
    GATES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Held while a provider's agent runs; frees its slot when dropped.
pub struct ProviderTurn {
    _permit: Option<OwnedSemaphorePermit>,
}

/// Waits for a free slot of the provider and for its cooldown, calling `tick` every few seconds
/// while waiting (activities heartbeat there).
pub async fn provider_turn<F, Fut>(provider: &ProviderConfig, mut tick: F) -> ProviderTurn
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if provider.max_concurrent == 0 && provider.cooldown.is_zero() {
        return ProviderTurn { _permit: None };
    }
    let gate = {
        let mut map = gates().lock().unwrap_or_else(|p| p.into_inner());
        map.entry(provider.name.clone())
            .or_insert_with(|| {
                Arc::new(ProviderGate {
                    slots: (provider.max_concurrent > 0)
                        .then(|| Arc::new(Semaphore::new(provider.max_concurrent as usize))),
                    next_start: Mutex::new(None),
                })
            })
            .clone()
    };
    let permit = match &gate.slots {
        None => None,
        Some(slots) => loop {
            match tokio::time::timeout(Duration::from_secs(5), slots.clone().acquire_owned()).await {
                Ok(Ok(permit)) => break Some(permit),
                Ok(Err(_)) => break None,
                Err(_) => {
                    tracing::info!(provider = %provider.name, "waiting for a free slot (max_concurrent = {})", provider.max_concurrent);
                    tick().await;
                }
            }
        },
    };
    if !provider.cooldown.is_zero() {
        // Reserve the next start time under the lock, then wait for our own.
        let start = {
            let mut next = gate.next_start.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + provider.cooldown);
            start
        };
        while Instant::now() < start {
            let wait = (start - Instant::now()).min(Duration::from_secs(5));
            tokio::time::sleep(wait).await;
            tick().await;
        }
    }
    ProviderTurn { _permit: permit }
}

/// Where a run's cost figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostSource {
    /// The agent reported it (or reported nothing, and nothing could be worked out).
    Reported,
    /// CHUM computed it from the tokens the agent reported and its provider's price.
    Computed,
    /// CHUM estimated it from the run's time at its provider's `cost_per_minute_usd`.
    Estimated,
}

/// What a run cost: what the agent reported (an error answer included); when it reported no cost,
/// its tokens at its provider's price (computed), else its time at the provider's rate
/// (estimated).
pub fn cost_of(provider: &ProviderConfig, reported: Option<AgentUsage>, duration_ms: u64) -> (AgentUsage, CostSource) {
    let mut usage = reported.unwrap_or_default();
    if usage.cost_usd > 0.0 {
        return (usage, CostSource::Reported);
    }
    let tokens = usage.input_tokens + usage.output_tokens;
    if let Some(price) = provider.price.filter(|_| tokens > 0) {
        usage.cost_usd = price.cost(usage.input_tokens, usage.output_tokens);
        return (usage, CostSource::Computed);
    }
    if provider.cost_per_minute_usd > 0.0 {
        usage.cost_usd = provider.cost_per_minute_usd * duration_ms as f64 / 60_000.0;
        return (usage, CostSource::Estimated);
    }
    (usage, CostSource::Reported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UsageRecord;

    #[test]
    fn the_day_starts_at_midnight_utc() {
        // 2026-11-22T13:45:00Z
        let t = 1_795_441_500_000;
        assert_eq!(utc_day_start(t) % DAY_MS, 0);
        assert!(t - utc_day_start(t) < DAY_MS);
    }

    #[test]
    fn each_cap_stops_at_its_own_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chum.db")).unwrap();
        let now = 10 * DAY_MS + 1000;
        let spend = |project: &str, bead: &str, cost: f64, at: i64| {
            store
                .record_usage(&UsageRecord {
                    project: project.into(),
                    bead_id: bead.into(),
                    input_tokens: 800,
                    output_tokens: 200,
                    cost_usd: cost,
                    created_ms: at,
                    ..UsageRecord::default()
                })
                .unwrap()
        };
        spend("demo", "tk-1", 0.6, now - 2 * DAY_MS); // an earlier day
        spend("demo", "tk-1", 0.3, now);
        spend("demo", "tk-2", 0.2, now);
        spend("other", "o-1", 1.0, now);
        let none = Budget::default();
        assert!(!has_caps(&none));
        assert!(affordable(&none, &store, "demo", "tk-1", now).is_ok());

        let per_bead = Budget {
            per_bead_usd: 0.85,
            ..Budget::default()
        };
        let err = affordable(&per_bead, &store, "demo", "tk-1", now)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bead tk-1 has spent $0.9000 of its $0.85 cap") && err.contains("per_bead_usd"),
            "{err}"
        );
        assert!(affordable(&per_bead, &store, "demo", "tk-2", now).is_ok());

        let tokens = Budget {
            per_bead_tokens: 2000,
            ..Budget::default()
        };
        assert!(
            affordable(&tokens, &store, "demo", "tk-1", now)
                .unwrap_err()
                .to_string()
                .contains("per_bead_tokens")
        );

        // Today: demo spent 0.5 (the earlier day does not count), everyone 1.5.
        let project_day = Budget {
            project_daily_usd: 0.5,
            ..Budget::default()
        };
        assert!(
            affordable(&project_day, &store, "demo", "tk-9", now)
                .unwrap_err()
                .to_string()
                .contains("project demo today")
        );
        assert!(
            affordable(&project_day, &store, "other", "o-2", now)
                .unwrap_err()
                .to_string()
                .contains("project other today")
        );
        let roomy = Budget {
            project_daily_usd: 0.51,
            ..Budget::default()
        };
        assert!(affordable(&roomy, &store, "demo", "tk-9", now).is_ok());
        let global = Budget {
            global_daily_usd: 1.5,
            ..Budget::default()
        };
        assert!(
            affordable(&global, &store, "demo", "tk-9", now)
                .unwrap_err()
                .to_string()
                .contains("CHUM today")
        );
        assert!(
            affordable(&global, &store, "demo", "tk-9", now + DAY_MS).is_ok(),
            "a new day"
        );
    }

    fn provider(name: &str, max: u32, cooldown_ms: u64) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            command: vec!["x".into()],
            output: chum_core::config::OutputFormat::Text,
            model: String::new(),
            env: Default::default(),
            max_concurrent: max,
            cooldown: Duration::from_millis(cooldown_ms),
            pass_env: vec![],
            cost_per_minute_usd: 0.0,
            price: None,
            allow_hosts: Default::default(),
            mcp_servers: vec![],
            writable: Vec::new(),
            readable: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_provider_runs_at_most_max_concurrent_at_once() {
        let p = provider("limited-test", 1, 0);
        let first = provider_turn(&p, || async {}).await;
        let waiting = tokio::spawn(async move { provider_turn(&p, || async {}).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "the second run waits for the first");
        drop(first);
        tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("it runs once the first is done")
            .unwrap();
    }

    #[tokio::test]
    async fn starts_of_a_provider_are_spaced_by_its_cooldown() {
        let p = provider("cooled-test", 0, 300);
        let t0 = Instant::now();
        let _a = provider_turn(&p, || async {}).await;
        let _b = provider_turn(&p, || async {}).await;
        let _c = provider_turn(&p, || async {}).await;
        assert!(t0.elapsed() >= Duration::from_millis(600), "{:?}", t0.elapsed());
        let free = provider("free-test", 0, 0);
        let t1 = Instant::now();
        let _d = provider_turn(&free, || async {}).await;
        assert!(t1.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn runs_that_check_at_once_see_each_others_reservations() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("chum.db")).unwrap();
        let spent = |cost: f64| UsageRecord {
            project: "demo".into(),
            bead_id: "tk-1".into(),
            provider: "claude".into(),
            role: "executor".into(),
            cost_usd: cost,
            created_ms: 1_000,
            ..UsageRecord::default()
        };
        store.record_usage(&spent(0.4)).unwrap();
        let budget = Budget {
            per_bead_usd: 1.0,
            ..Budget::default()
        };
        let (typical, _) = store.typical_usage("claude", "executor").unwrap();
        assert!((typical - 0.4).abs() < 1e-9);
        let reserve = |store: &mut Store| {
            store
                .reserve_usage(&spent(typical), 0, |s| affordable(&budget, s, "demo", "tk-1", 2_000))
                .unwrap()
        };
        // Three runs start together: without reservations each would see $0.40 of $1.00 spent.
        let first = reserve(&mut store).expect("0.40 spent");
        let second = reserve(&mut store).expect("0.80 spent or reserved");
        let third = reserve(&mut store).expect_err("1.20 spent or reserved");
        assert!(third.to_string().contains("per_bead_usd"), "{third}");
        // The real figures replace the reservations; a run that never started frees its place.
        store.settle_usage(first, &spent(0.1)).unwrap();
        store.drop_reservation(second).unwrap();
        let now = store.spent(UsageFilter::default()).unwrap();
        assert!((now.cost_usd - 0.5).abs() < 1e-9, "{now:?}");
    }

    #[test]
    fn an_error_answer_costs_what_it_reported_and_a_silent_provider_its_tokens_or_its_time() {
        use crate::agent::CostSource;
        let mut provider = provider("text-agent", 0, 0);
        let reported = chum_core::proto::AgentUsage {
            input_tokens: 10,
            output_tokens: 5,
            cost_usd: 0.25,
        };
        assert_eq!(
            crate::agent::cost_of(&provider, Some(reported), 1000),
            (reported, CostSource::Reported)
        );
        let (usage, source) = crate::agent::cost_of(&provider, None, 60_000);
        assert_eq!(
            (usage.cost_usd, source),
            (0.0, CostSource::Reported),
            "no rate, no estimate"
        );
        provider.cost_per_minute_usd = 0.5;
        let (usage, source) = crate::agent::cost_of(&provider, None, 90_000);
        assert!(
            source == CostSource::Estimated && (usage.cost_usd - 0.75).abs() < 1e-9,
            "{usage:?}"
        );
        // Tokens without dollars (Codex) at the provider's price: computed, before any estimate.
        provider.price = chum_core::config::table_price("gpt-5-codex");
        let tokens_only = chum_core::proto::AgentUsage {
            input_tokens: 1_200,
            output_tokens: 150,
            cost_usd: 0.0,
        };
        let (usage, source) = crate::agent::cost_of(&provider, Some(tokens_only), 90_000);
        assert_eq!(source, CostSource::Computed);
        assert!((usage.cost_usd - 0.003).abs() < 1e-12, "{usage:?}");
    }
}
