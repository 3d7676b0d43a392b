// The study page: summary, Pareto front (colourable by any hyperparameter), each
// hyperparameter vs compute with its fitted rule, N* and D* vs compute, the trial table.
// Polls the study; trials and rules are fetched again only when the study changed.
"use strict";

(function () {
  const { el, fmt } = ST;
  const studyId = Number(new URLSearchParams(location.search).get("id"));
  const EXTRAPOLATE = 100; // laws are drawn to 100x the largest compute, as in the report
  const FRONT_COLOUR = "#2a5d9c";
  const OTHER_COLOUR = "#b4bcc8";
  const LAW_COLOUR = "#c0392b";

  const view = {
    detail: null,
    trials: [],
    rules: null,
    signature: null,
    colourBy: "",
    sort: { key: "number", dir: 1 },
    metrics: new Map(), // trial id -> metrics, fetched only when an axis is a metric
  };

  // -- data --------------------------------------------------------------------------------

  async function refresh() {
    if (!Number.isInteger(studyId)) throw new Error("open this page as study.html?id=<study id>");
    const detail = await ST.getJSON(`/studies/${studyId}`);
    view.detail = detail;
    renderSummary(detail);
    // The front can move with no new trial (the engine's estimate is stored later).
    const front = detail.front.map((p) => [p.trial_ids, p.estimated_loss]);
    const signature = JSON.stringify([detail.state, detail.trials_by_state, detail.progress.spent_cost, detail.has_rules, detail.front_source, front]);
    if (signature === view.signature) return;
    view.trials = await ST.getAll(`/studies/${studyId}/trials`, 1000);
    view.rules = detail.has_rules ? await ST.getJSON(`/studies/${studyId}/rules`) : null;
    await loadAxisMetrics();
    view.signature = signature;
    renderAll();
  }

  function axes() {
    return view.rules?.axes || view.detail.spec.scaling || {};
  }

  function axisNames() {
    const a = axes();
    return [a.n_params, a.tokens, a.compute].filter(Boolean);
  }

  // Axes named after metrics are not in the trial list: read the details of the front's
  // trials (every run of a front configuration; called once the trial list is loaded).
  async function loadAxisMetrics() {
    const names = axisNames().filter((n) => n !== "cost");
    const missing = (t) => names.some((n) => !(n in t.params)) && !view.metrics.has(t.id);
    const onFront = frontIds();
    const wanted = view.trials.filter((t) => onFront.has(t.id) && missing(t));
    const details = await Promise.all(wanted.map((t) => ST.getJSON(`/trials/${t.id}`)));
    for (const d of details) view.metrics.set(d.id, d.metrics);
  }

  function axisValue(trial, name) {
    if (name in trial.params) return Number(trial.params[name]);
    const metrics = view.metrics.get(trial.id);
    if (metrics && name in metrics) return Number(metrics[name]);
    return name === "cost" ? trial.cost_seconds : NaN;
  }

  // A trial's compute: the compute axis, else 6 N D FLOPs (search/scaling).
  function computeOf(trial) {
    const a = axes();
    if (a.compute) return axisValue(trial, a.compute);
    return 6 * axisValue(trial, a.n_params) * axisValue(trial, a.tokens);
  }

  function completed() {
    return view.trials.filter((t) => t.state === "COMPLETE" && t.loss !== null && t.cost_seconds > 0);
  }

  // Every completed trial of a configuration on the front (a repeated one has several).
  function frontIds() {
    return new Set(view.detail.front.flatMap((p) => p.trial_ids));
  }

  // The front point a trial belongs to, if any, by trial id.
  function frontPointOf(id) {
    return view.detail.front.find((p) => p.trial_ids.includes(id));
  }

  function paramNames() {
    const names = [];
    for (const t of view.trials) for (const k of Object.keys(t.params)) if (!names.includes(k)) names.push(k);
    return names;
  }

  // -- summary -----------------------------------------------------------------------------

  function renderSummary(d) {
    document.title = `scaletune · ${d.name}`;
    const chips = Object.entries(d.trials_by_state)
      .filter(([, n]) => n > 0)
      .map(([state, n]) => el("span", { class: `badge state-${state.toLowerCase()}` }, `${state} ${n}`));
    const links = d.has_rules
      ? el("span", {}, "rules: ", el("a", { href: `/studies/${d.id}/rules` }, "JSON"), " · ",
          el("a", { href: `/studies/${d.id}/rules.yaml` }, "YAML"), " · ",
          el("a", { href: `/studies/${d.id}/report/scaling-report.md` }, "report"))
      : el("span", { class: "note" }, d.message ? `no rules: ${d.message}` : "rules are fitted when the study completes");
    ST.replace(
      "summary",
      el("h1", {}, `${d.name} `, ST.badge(d.state)),
      el("div", { class: "subtitle" }, `study ${d.id} · objective ${d.objective} · created ${new Date(d.created_at * 1000).toLocaleString()}`),
      d.error ? el("div", { class: "error", id: "study-error" }, `This study cannot run: ${d.error}`) : null,
      el("div", { class: "row" },
        el("div", {}, ST.progressBar(d.progress.fraction, ST.budgetText(d.progress))),
        el("div", { class: "chips" }, chips),
        links),
      d.queue_workers === 0
        ? el("div", { class: "warning", id: "unserved" },
            `No live worker consumes queue "${d.spec.queue}": its trials wait until one does.`)
        : null,
    );
    renderBands(d.best_per_cost_band);
  }

  function renderBands(bands) {
    document.querySelector("#bands tbody").replaceChildren(
      ...bands.map((b) => el("tr", {}, el("td", { class: "num" }, fmt.num(b.max_cost)), el("td", { class: "num" }, fmt.num(b.best_loss)))),
    );
    ST.replace("bands-empty", bands.length ? null : el("div", { class: "empty" }, "No completed trial yet."));
  }

  // -- the front ---------------------------------------------------------------------------

  function renderAll() {
    renderColourSelect();
    renderFront();
    renderRules();
    renderAllocation();
    renderTrials();
  }

  function renderColourSelect() {
    const select = document.getElementById("colour-by");
    const names = paramNames();
    const current = [...select.options].map((o) => o.value).slice(1);
    if (JSON.stringify(current) !== JSON.stringify(names)) {
      select.replaceChildren(el("option", { value: "" }, "front / other"), ...names.map((n) => el("option", { value: n }, n)));
      select.value = names.includes(view.colourBy) ? view.colourBy : "";
    }
    select.onchange = () => {
      view.colourBy = select.value;
      renderFront();
    };
  }

  function trialTitle(t) {
    const params = Object.entries(t.params).map(([k, v]) => `${k} = ${fmt.value(v)}`);
    const p = frontPointOf(t.id);
    const onFront = p
      ? [`on the front: loss ${fmt.num(p.estimated_loss)} (${view.detail.front_source === "model" ? "model estimate" : "measured"}), measured mean ${fmt.num(p.observed_loss)} over ${p.n_measurements} run${p.n_measurements === 1 ? "" : "s"}`]
      : [];
    return [`trial #${t.number} (${t.reason})`, `loss ${fmt.num(t.loss)} · cost ${fmt.num(t.cost_seconds)} GPU-s`, ...onFront, ...params].join("\n");
  }

  function showTrial(id) {
    const row = document.getElementById(`trial-${id}`);
    if (!row) return;
    row.scrollIntoView({ block: "center", behavior: "smooth" });
    row.classList.remove("flash");
    void row.offsetWidth; // restart the animation
    row.classList.add("flash");
  }

  // The 90% quantile plus a margin: a few diverged runs must not flatten the front.
  function lossCeiling(losses) {
    if (losses.length < 8) return null;
    const sorted = [...losses].sort((a, b) => a - b);
    const q90 = sorted[Math.floor(0.9 * (sorted.length - 1))];
    return q90 + 0.3 * (q90 - sorted[0]);
  }

  // Through the front's points as the API gives them (by cost): each configuration at its
  // mean cost and the loss the front was taken on, which for a repeated or lucky run is
  // not where its own trials sit.
  function frontStaircase(points) {
    const steps = [];
    points.forEach((p, i) => {
      if (i > 0) steps.push({ x: p.mean_cost, y: points[i - 1].estimated_loss });
      steps.push({ x: p.mean_cost, y: p.estimated_loss });
    });
    return steps;
  }

  function renderFront() {
    const done = completed();
    const onFront = frontIds();
    const front = done.filter((t) => onFront.has(t.id)).sort((a, b) => a.cost_seconds - b.cost_seconds);
    const others = done.filter((t) => !onFront.has(t.id));
    const scale = view.colourBy ? ST.colourScale(done.map((t) => t.params[view.colourBy])) : null;
    const colour = (t, fallback) => (scale ? scale.colour(t.params[view.colourBy]) : fallback);
    const point = (t, fallback, r) => ({ x: t.cost_seconds, y: t.loss, id: t.id, r, color: colour(t, fallback), title: trialTitle(t), onclick: () => showTrial(t.id) });
    const chart = new ST.Chart({ width: widthOf("front-chart", 860), height: 400, xLabel: "cost (GPU-seconds, log scale)", yLabel: "loss", xLog: true, yMax: lossCeiling(done.map((t) => t.loss)) });
    chart.points(others.map((t) => point(t, OTHER_COLOUR, 3.5)), { class: "points trials", stroke: scale ? "rgba(0,0,0,0.25)" : "none" });
    chart.line(frontStaircase(view.detail.front), { stroke: "#1d2330", width: 1.5, class: "front-step" });
    chart.points(front.map((t) => point(t, FRONT_COLOUR, 5.5)), { class: "points front", stroke: "#1d2330", strokeWidth: 1.2 });
    ST.replace("front-chart", done.length ? chart.render() : el("div", { class: "empty" }, "No completed trial yet."));
    const failed = view.trials.filter((t) => t.state === "FAILED").length;
    const running = view.trials.filter((t) => t.state === "RUNNING").length;
    ST.replace(
      "front-legend",
      scale ? el("span", {}, `${view.colourBy}: `) : null,
      scale ? scale.legend() : [key(FRONT_COLOUR, `front (${view.detail.front.length} configurations, ${front.length} trials)`), key(OTHER_COLOUR, `other completed (${others.length})`)],
      el("span", { class: "note" }, `outlined: trials of a configuration on the front · line: the front at each configuration's mean cost and ${view.detail.front_source === "model" ? "the engine's loss estimate" : "mean measured loss"} · ▲ above the plotted range · ${failed} failed and ${running} running not shown`),
    );
  }

  // Draw at the container's own width, so text is never scaled.
  function widthOf(id, fallback) {
    return document.getElementById(id).clientWidth || fallback;
  }

  function key(colour, text) {
    return el("span", { class: "key" }, el("i", { style: `background:${colour}` }), text);
  }

  // -- hyperparameters vs compute ----------------------------------------------------------

  // A law through estimated optima passes through them almost exactly (R² ~ 1 says
  // nothing): show what a user can act on instead, the slope's interval and how far the
  // optimum is known at the largest run (in decades for log-scale parameters), plus, for
  // a designed sweep, how far the cells' own optima scatter around the law.
  function lawText(rule) {
    const law = rule.vs_compute;
    const b = law.coef[1];
    const y = rule.transform === "identity" ? "x*" : `${rule.transform}(x*)`;
    const perUnit = { ln: 1 / Math.LN10, log2: Math.log10(2) }[rule.transform];
    const unit = perUnit ? " dex" : "";
    const scale = perUnit || 1;
    const x = Math.log(view.rules.observed.compute_max);
    const cov = law.coef_cov;
    const variance = cov[0][0] + 2 * x * cov[0][1] + x * x * cov[1][1] + (law.extra_variance || 0);
    const parts = [
      `${y} = ${fmt.num(law.coef[0], 3)} ${b < 0 ? "−" : "+"} ${fmt.num(Math.abs(b), 3)} ln C`,
      `slope [${fmt.num(law.coef_low[1], 3)}, ${fmt.num(law.coef_high[1], 3)}]`,
      `optimum ±${fmt.num(1.645 * Math.sqrt(Math.max(variance, 0)) * scale, 2)}${unit} at the largest run`,
    ];
    if (view.rules.optima_from === "cells") {
      parts.push(`cell optima scatter ${fmt.num(law.residual_sd * scale, 2)}${unit} around the law`);
    }
    return parts.join(" · ");
  }

  function hpChart(name, rule) {
    const onFront = frontIds();
    const done = completed().filter((t) => typeof t.params[name] === "number" && computeOf(t) > 0);
    const values = done.map((t) => t.params[name]);
    const logY = rule ? ["ln", "log2"].includes(rule.transform) : values.every((v) => v > 0) && Math.max(...values) / Math.min(...values) > 30;
    const chart = new ST.Chart({ width: 440, height: 250, xLabel: `compute (${computeUnit()})`, yLabel: name, xLog: true, yLog: logY });
    const point = (t, colour, r) => ({ x: computeOf(t), y: t.params[name], r, color: colour, title: trialTitle(t), id: t.id, onclick: () => showTrial(t.id) });
    chart.points(done.filter((t) => !onFront.has(t.id)).map((t) => point(t, OTHER_COLOUR, 2.5)));
    if (rule?.vs_compute) {
      const { compute_min, compute_max } = view.rules.observed;
      const curve = ST.lawCurve(rule.vs_compute, rule.transform, compute_min, EXTRAPOLATE * compute_max);
      chart.band(curve, { fill: LAW_COLOUR, domainY: false, class: "band law-band" });
      chart.line(curve, { stroke: LAW_COLOUR, class: "line law-line" });
      chart.vline(compute_max, "largest run");
    }
    chart.points(done.filter((t) => onFront.has(t.id)).map((t) => point(t, FRONT_COLOUR, 4.5)), { stroke: "#1d2330", class: "points front" });
    return chart.render();
  }

  // A choice parameter: how often each value sits in the compute-efficient set.
  function choiceBars(choice) {
    const most = Math.max(...choice.counts.map(([, n]) => n));
    return el("div", { class: "choice-bars" }, choice.counts.flatMap(([value, n]) => [
      el("span", {}, fmt.value(value)),
      el("div", { class: `bar${value === choice.value ? " top" : ""}`, style: `width:${(100 * n) / most}%` }),
      el("span", { class: "note" }, n),
    ]));
  }

  function ruleNote(rule) {
    if (!rule) return "no fitted rule yet";
    if (rule.choice) return `choice: most frequent along the efficient set ${fmt.value(rule.choice.value)} (${Math.round(100 * rule.choice.frequency)}%)`;
    if (!rule.supported || !rule.vs_compute) return `no rule: ${rule.reason || "unsupported"}`;
    return lawText(rule);
  }

  function computeUnit() {
    return view.rules?.observed.compute_unit || (axes().compute ? axes().compute : "FLOPs, 6 N D");
  }

  function renderRules() {
    const names = axisNames();
    if (names.length === 0) {
      ST.replace("rules-note", "This study declares no scaling axes (spec.scaling), so there is no compute to plot against.");
      ST.replace("hp-charts");
      return;
    }
    const rules = view.rules?.hyperparameters || [];
    const ruleOf = new Map(rules.map((r) => [r.name, r]));
    const hps = rules.length ? rules.map((r) => r.name) : paramNames().filter((n) => !names.includes(n));
    const level = view.rules ? `${Math.round(100 * view.rules.level)}% interval` : null;
    ST.replace(
      "rules-note",
      view.rules
        ? `Grey: every completed trial; blue: the front; red: the fitted rule with its ${level}, drawn to ${EXTRAPOLATE}× the largest compute observed.`
        : `Grey: every completed trial; blue: the front. The fitted rules appear here when the study completes${view.detail.message ? ` (${view.detail.message})` : ""}.`,
    );
    ST.replace(
      "hp-charts",
      hps.map((name) => {
        const rule = ruleOf.get(name);
        const numeric = completed().some((t) => typeof t.params[name] === "number");
        return el("div", { class: "small-chart", "data-param": name },
          el("h3", {}, name),
          el("div", { class: "law" }, ruleNote(rule)),
          numeric ? hpChart(name, rule) : rule?.choice ? choiceBars(rule.choice) : null);
      }),
    );
  }

  // -- N* and D* vs compute ----------------------------------------------------------------

  function renderAllocation() {
    const a = axes();
    const card = document.getElementById("allocation-card");
    card.hidden = !(a.n_params && a.tokens);
    if (card.hidden) return;
    const onFront = frontIds();
    const front = completed().filter((t) => onFront.has(t.id) && computeOf(t) > 0);
    const chart = new ST.Chart({ width: widthOf("allocation-chart", 860), height: 340, xLabel: `compute (${computeUnit()})`, yLabel: "parameters N / tokens D", xLog: true, yLog: true });
    const allocation = view.rules?.allocation || {};
    const series = [
      { name: "N", axis: a.n_params, law: allocation.n_params, reason: allocation.n_params_reason, colour: "#2a5d9c" },
      { name: "D", axis: a.tokens, law: allocation.tokens, reason: allocation.tokens_reason, colour: "#1e8e5a" },
    ];
    const notes = [];
    for (const s of series) {
      if (s.law) {
        const curve = ST.lawCurve(s.law, "ln", view.rules.observed.compute_min, EXTRAPOLATE * view.rules.observed.compute_max);
        chart.band(curve, { fill: s.colour, domainY: false, class: `band alloc-band-${s.name}` });
        chart.line(curve, { stroke: s.colour, class: `line alloc-${s.name}` });
        notes.push(`${s.name}*(C) ∝ C^${fmt.num(s.law.coef[1], 3)} [${fmt.num(s.law.coef_low[1], 3)}, ${fmt.num(s.law.coef_high[1], 3)}]`);
      } else if (s.reason) {
        notes.push(`${s.name}*(C): ${s.reason}`);
      }
      chart.points(front.map((t) => ({ x: computeOf(t), y: axisValue(t, s.axis), color: s.colour, r: 4, title: trialTitle(t), id: t.id, onclick: () => showTrial(t.id) })), { class: `points front-${s.name}`, stroke: "#fff" });
    }
    if (view.rules) chart.vline(view.rules.observed.compute_max, "largest run");
    ST.replace("allocation-note", notes.length ? notes.join(" · ") : "Points: the front trials' N and D. The fitted N*(C) and D*(C) appear when the study completes.");
    ST.replace("allocation-chart", front.length ? chart.render() : el("div", { class: "empty" }, "No front yet."));
    ST.replace("allocation-legend", series.map((s) => key(s.colour, `${s.name} (${s.axis}) of the front trials${s.law ? `, fitted ${s.name}*(C) and interval` : ""}`)));
  }

  // -- the trial table ---------------------------------------------------------------------

  function columns() {
    const cols = [
      { key: "number", label: "#", num: true, get: (t) => t.number },
      { key: "state", label: "state", get: (t) => t.state, cell: (t) => ST.badge(t.state) },
      { key: "loss", label: "loss", num: true, get: (t) => t.loss, text: (v) => fmt.num(v) },
      { key: "cost", label: "cost (GPU-s)", num: true, get: (t) => t.cost_seconds, text: (v) => fmt.num(v) },
    ];
    for (const name of paramNames()) {
      cols.push({ key: `p:${name}`, label: name, num: true, get: (t) => t.params[name], text: (v) => (v === undefined ? "–" : fmt.value(v)) });
    }
    cols.push(
      { key: "reason", label: "reason", get: (t) => t.reason },
      // a running trial's worker comes from its heartbeat: "—" until one names it
      { key: "worker", label: "worker", get: (t) => t.worker || (t.external ? "external" : "—") },
      { key: "duration", label: "wall time", num: true, get: (t) => (t.finished_at && t.dispatched_at ? t.finished_at - t.dispatched_at : null), text: (v) => fmt.seconds(v) },
    );
    return cols;
  }

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    return a < b ? -1 : 1;
  }

  function renderTrials() {
    const cols = columns();
    const onFront = frontIds();
    const col = cols.find((c) => c.key === view.sort.key) || cols[0];
    const rows = [...view.trials].sort((a, b) => view.sort.dir * compare(col.get(a), col.get(b)));
    const head = el("tr", {}, cols.map((c) => {
      const sorted = c.key === col.key ? (view.sort.dir > 0 ? " sorted-asc" : " sorted-desc") : "";
      return el("th", { class: `sortable${c.num ? " num" : ""}${sorted}`, onclick: () => sortBy(c.key) }, c.label);
    }));
    document.querySelector("#trials thead").replaceChildren(head);
    document.querySelector("#trials tbody").replaceChildren(...rows.map((t) =>
      el("tr", { id: `trial-${t.id}`, class: onFront.has(t.id) ? "on-front" : null, title: onFront.has(t.id) ? "on the front" : null },
        cols.map((c) => el("td", { class: c.num ? "num" : null }, c.cell ? c.cell(t) : c.text ? c.text(c.get(t)) : c.get(t))))));
  }

  function sortBy(keyName) {
    view.sort = { key: keyName, dir: view.sort.key === keyName ? -view.sort.dir : 1 };
    renderTrials();
  }

  ST.poll(refresh);
})();
