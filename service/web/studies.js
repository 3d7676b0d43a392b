// The studies list: every study with its state, progress and best loss per cost band.
"use strict";

(function () {
  const { el, fmt } = ST;

  function bandsCell(bands) {
    if (!bands.length) return el("span", { class: "note" }, "no completed trial yet");
    return el(
      "div",
      { class: "bands" },
      bands.map((b) =>
        el("span", { class: "band-chip", title: `best loss of a trial costing at most ${fmt.num(b.max_cost)} GPU-s` },
          `≤ ${fmt.si(b.max_cost)} s: `, el("b", {}, fmt.num(b.best_loss))),
      ),
    );
  }

  function row(study) {
    if (!study.progress) return failedRow(study);
    const states = study.trials_by_state;
    return el(
      "tr",
      { "data-study": study.id, class: study.error ? "study-error" : null },
      el("td", { class: "num" }, study.id),
      el("td", {}, ST.studyLink(study.id, study.name)),
      el("td", {}, study.objective),
      el("td", {}, ST.badge(study.state), study.error ? errorNote(study.error) : null),
      el("td", {}, ST.progressBar(study.progress.fraction, ST.budgetText(study.progress))),
      el("td", { class: "num" }, states.COMPLETE || 0),
      el("td", { class: "num" }, states.RUNNING || 0),
      el("td", {}, bandsCell(study.best_per_cost_band)),
      el("td", { title: new Date(study.updated_at * 1000).toLocaleString() }, fmt.ago(study.updated_at)),
    );
  }

  // A study whose stored spec no longer loads: it cannot run; the API says why.
  function errorNote(error) {
    return el("div", { class: "note study-error-note", title: error }, "spec no longer loads");
  }

  // A study whose detail could not be read: its list entry and why, so one study never
  // empties the page.
  function failedRow(study) {
    return el(
      "tr",
      { "data-study": study.id, class: "study-error" },
      el("td", { class: "num" }, study.id),
      el("td", {}, ST.studyLink(study.id, study.name)),
      el("td", {}, study.objective),
      el("td", {}, ST.badge(study.state), study.error ? errorNote(study.error) : null),
      el("td", { colspan: 4, class: "note" }, `detail unavailable: ${study.failure}`),
      el("td", { title: new Date(study.updated_at * 1000).toLocaleString() }, fmt.ago(study.updated_at)),
    );
  }

  // Completed and stopped studies never change again: their details are fetched once.
  const FINAL = new Set(["COMPLETE", "STOPPED"]);
  const finished = new Map();

  async function detail(study) {
    if (finished.has(study.id)) return finished.get(study.id);
    try {
      const d = await ST.getJSON(`/studies/${study.id}`);
      if (FINAL.has(d.state)) finished.set(d.id, d);
      return d;
    } catch (error) {
      if (error.status === 401) throw error; // the whole page needs a token
      return { ...study, failure: String(error.message || error) };
    }
  }

  async function refresh() {
    const studies = await ST.getAll("/studies", 200);
    const details = await Promise.all(studies.map(detail));
    details.sort((a, b) => b.id - a.id);
    document.querySelector("#studies tbody").replaceChildren(...details.map(row));
    ST.replace("studies-empty", details.length ? null : el("div", { class: "empty" }, "No studies yet: submit one with `scaletune submit study.yaml`."));
  }

  ST.poll(refresh);
})();
