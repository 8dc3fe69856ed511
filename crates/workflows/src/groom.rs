//! Grooming: the factory tends its backlog.
//!
//! ```text
//! TacticalGroom (child of every Shark, ParentClosePolicy::Abandon):
//!   propose_mutations (groomer agent: the finished bead, its diff summary, lessons, the open backlog)
//!   -> apply_mutations (each validated against the backlog as it is now; rejected ones recorded)
//! StrategicGroom (a Temporal Schedule per project, daily by default):
//!   propose_mutations (premium groomer: repo map, bead state summary, recent lessons)
//!   -> apply_mutations -> commit_briefing (.beads/briefing.md, committed once)
//! ```
//! Neither ever fails its parent or the backlog: an unusable answer ends the groom with an error
//! in its result and nothing applied.

use crate::learner::background_agent_options;
use chum_core::activity_contract::GroomActivities;
use chum_core::proto::{
    ApplyMutationsRequest, BriefingRequest, GroomKind, GroomRequest, GroomResult, RunRef, StrategicGroomInput,
    TacticalGroomInput,
};
use temporalio_sdk::workflows::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

/// Proposes, then applies; the shared middle of both grooms.
async fn propose_and_apply<W>(
    ctx: &WorkflowContext<W>,
    groom: &RunRef,
    kind: GroomKind,
    finished: Option<TacticalGroomInput>,
    result: &mut GroomResult,
) -> Option<String> {
    let request = GroomRequest {
        groom: Some(groom.clone()),
        kind: kind as i32,
        finished,
    };
    let proposal = match ctx
        .execute_activity(GroomActivities::propose_mutations, request, background_agent_options())
        .await
    {
        Ok(proposal) => proposal,
        Err(err) => {
            result.error = format!("no proposal: {err}");
            return None;
        }
    };
    result.agent = proposal.agent;
    if !proposal.error.is_empty() {
        result.error = proposal.error;
        return None;
    }
    if !proposal.mutations.is_empty() {
        let request = ApplyMutationsRequest {
            groom: Some(groom.clone()),
            mutations: proposal.mutations,
            kind: kind as i32,
        };
        match ctx
            .execute_activity(GroomActivities::apply_mutations, request, background_agent_options())
            .await
        {
            Ok(report) => result.outcomes = report.outcomes,
            Err(err) => result.error = format!("mutations not applied: {err}"),
        }
    }
    result.applied = result.outcomes.iter().filter(|o| o.applied).count() as u32;
    result.rejected = result.outcomes.iter().filter(|o| !o.applied).count() as u32;
    Some(proposal.briefing)
}

#[workflow]
#[derive(Default)]
pub struct TacticalGroomWorkflow;

#[workflow_methods]
impl TacticalGroomWorkflow {
    #[run(name = "TacticalGroom")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: TacticalGroomInput) -> WorkflowResult<GroomResult> {
        let finished = input.run.clone().unwrap_or_default();
        let groom = RunRef {
            project: finished.project.clone(),
            bead_id: finished.bead_id.clone(),
            workflow_id: ctx.workflow_id().to_string(),
            run_id: ctx.run_id().to_string(),
        };
        let mut result = GroomResult {
            project: groom.project.clone(),
            kind: GroomKind::Tactical as i32,
            ..GroomResult::default()
        };
        propose_and_apply(ctx, &groom, GroomKind::Tactical, Some(input), &mut result).await;
        Ok(result)
    }
}

#[workflow]
#[derive(Default)]
pub struct StrategicGroomWorkflow;

#[workflow_methods]
impl StrategicGroomWorkflow {
    #[run(name = "StrategicGroom")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: StrategicGroomInput) -> WorkflowResult<GroomResult> {
        let groom = RunRef {
            project: input.project.clone(),
            bead_id: String::new(),
            workflow_id: ctx.workflow_id().to_string(),
            run_id: ctx.run_id().to_string(),
        };
        let mut result = GroomResult {
            project: input.project.clone(),
            kind: GroomKind::Strategic as i32,
            ..GroomResult::default()
        };
        let Some(briefing) = propose_and_apply(ctx, &groom, GroomKind::Strategic, None, &mut result).await else {
            return Ok(result);
        };
        let request = BriefingRequest {
            groom: Some(groom.clone()),
            briefing,
            outcomes: result.outcomes.clone(),
        };
        match ctx
            .execute_activity(GroomActivities::commit_briefing, request, background_agent_options())
            .await
        {
            Ok(report) => result.briefing = Some(report),
            Err(err) => result.error = format!("briefing not committed: {err}"),
        }
        Ok(result)
    }
}
