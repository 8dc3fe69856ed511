// CHUM console: live updates of a run page from the API's Server-Sent Events
// (GET /runs/{id}/events). Phases and gate results are appended as they arrive; when the run
// reaches a gate that waits for a person, or ends, the page reloads to show the plan, the
// buttons, the diffs and the outcome as the server renders them.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("run");
  if (!run || run.dataset.phase === "done" || !window.EventSource) return;
  const source = new EventSource("/runs/" + encodeURIComponent(run.dataset.run) + "/events");
  const text = (tag, content, cls) => {
    const el = document.createElement(tag);
    el.textContent = content;
    if (cls) el.className = cls;
    return el;
  };
  source.addEventListener("phase", (e) => {
    const d = JSON.parse(e.data);
    const li = text("li", d.phase + " ");
    li.dataset.phase = d.phase;
    li.appendChild(text("span", "round " + d.round, "muted"));
    document.getElementById("phases")?.appendChild(li);
    const phase = document.getElementById("phase");
    if (phase) phase.textContent = d.phase;
    run.dataset.phase = d.phase;
    if (d.phase === "awaiting_approval" || d.phase === "awaiting_result_approval") {
      source.close();
      location.replace(location.pathname);
    }
  });
  source.addEventListener("gate", (e) => {
    const g = JSON.parse(e.data);
    const tr = document.createElement("tr");
    tr.className = g.passed ? "passed" : "failed";
    tr.dataset.gate = g.gate;
    tr.appendChild(text("td", g.gate + (g.provider ? " " + g.provider : "")));
    tr.appendChild(text("td", String(g.round || 0) + (g.handoff ? "." + g.handoff : "")));
    tr.appendChild(text("td", g.passed ? "passed" : "failed"));
    tr.appendChild(text("td", (g.duration_ms || 0) + " ms"));
    const td = document.createElement("td");
    td.appendChild(text("pre", g.excerpt || "", "excerpt"));
    tr.appendChild(td);
    document.querySelector("#gates tbody")?.appendChild(tr);
  });
  source.addEventListener("done", () => {
    source.close();
    // The page as the server renders a finished run (without the note of a decision).
    location.replace(location.pathname);
  });
});
