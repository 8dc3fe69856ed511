// CHUM console: live updates of a run page from the API's Server-Sent Events
// (GET /runs/{id}/events). Phases and gate results are appended as they arrive; when the run
// reaches a gate that waits for a person, or ends, the page reloads to show the plan, the
// buttons, the diffs and the outcome as the server renders them.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("run");
  if (!run || run.dataset.phase === "done" || !window.EventSource) return;
  const source = new EventSource("/runs/" + encodeURIComponent(run.dataset.run) + "/events");
  const reload = () => {
    source.close();
    // The page as the server renders it now (without the note of a decision).
    location.replace(location.pathname);
  };
  const text = (tag, content, cls) => {
    const el = document.createElement(tag);
    el.textContent = content;
    if (cls) el.className = cls;
    return el;
  };
  const waiting = (phase) => phase === "awaiting_approval" || phase === "awaiting_result_approval";
  const addPhase = (phase, round) => {
    const li = text("li", phase + " ");
    li.dataset.phase = phase;
    li.appendChild(text("span", "round " + (round || 0), "muted"));
    document.getElementById("phases")?.appendChild(li);
    run.dataset.spans = String(Number(run.dataset.spans || 0) + 1);
    const shown = document.getElementById("phase");
    if (shown) shown.textContent = phase;
  };
  const addGate = (g) => {
    const tr = document.createElement("tr");
    tr.className = g.passed ? "passed" : "failed";
    // A project's own gate is "named" with its name beside it.
    const label = g.gate === "named" && g.name ? g.name : g.gate;
    tr.dataset.gate = label;
    tr.appendChild(text("td", label + (g.provider ? " " + g.provider : "")));
    tr.appendChild(text("td", String(g.round || 0) + (g.handoff ? "." + g.handoff : "")));
    tr.appendChild(text("td", g.passed ? "passed" : "failed"));
    tr.appendChild(text("td", (g.duration_ms || 0) + " ms"));
    const td = document.createElement("td");
    td.appendChild(text("pre", g.excerpt || "", "excerpt"));
    tr.appendChild(td);
    document.querySelector("#gates tbody")?.appendChild(tr);
    run.dataset.gates = String(Number(run.dataset.gates || 0) + 1);
  };
  // The stream's first event is the whole status as it is now: what happened between the page
  // being rendered and the stream opening is caught up here, so nothing is missed.
  source.addEventListener("status", (e) => {
    const s = JSON.parse(e.data);
    const spans = s.phases || [];
    for (let i = Number(run.dataset.spans || 0); i < spans.length; i++) addPhase(spans[i].phase, spans[i].round);
    const gates = s.gate_results || [];
    for (let i = Number(run.dataset.gates || 0); i < gates.length; i++) addGate(gates[i]);
    const moved = s.phase !== run.dataset.phase
      || String(s.plan_round || 0) !== run.dataset.round
      || String(s.attempt || 0) !== run.dataset.attempt;
    if (s.phase === "done" || (waiting(s.phase) && moved)) reload();
  });
  source.addEventListener("phase", (e) => {
    const d = JSON.parse(e.data);
    addPhase(d.phase, d.round);
    run.dataset.phase = d.phase;
    if (waiting(d.phase)) reload();
  });
  source.addEventListener("gate", (e) => addGate(JSON.parse(e.data)));
  source.addEventListener("done", reload);
});
