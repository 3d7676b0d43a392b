// The queues page: per queue waiting/running trials; workers, current trial, heartbeat age.
"use strict";

(function () {
  const { el, fmt } = ST;

  function queueRow(queue) {
    return el(
      "tr",
      { "data-queue": queue.name },
      el("td", {}, queue.name),
      el("td", { class: "num" }, queue.waiting),
      el("td", { class: "num" }, queue.running),
      consumersCell(queue),
    );
  }

  // Live workers consuming the queue (null: heartbeats unavailable). None while trials
  // wait is flagged: they wait unspent until a worker on that queue starts.
  function consumersCell(queue) {
    if (queue.consumers === null) return el("td", { class: "num note" }, "—");
    const unserved = queue.consumers === 0 && queue.waiting > 0;
    const attrs = unserved
      ? { class: "num age-old unserved", title: "no live worker consumes this queue" }
      : { class: "num" };
    return el("td", attrs, queue.consumers);
  }

  // Green while beats are fresh, amber past 10 s, red past 30 s (the heartbeat TTL).
  function ageCell(ageSeconds) {
    const cls = ageSeconds < 10 ? "age-ok" : ageSeconds < 30 ? "age-late" : "age-old";
    return el("td", { class: `num ${cls}` }, fmt.seconds(ageSeconds));
  }

  function workerRow(worker) {
    const busy = worker.trial_id !== null;
    const trial = busy
      ? el("span", {}, ST.studyLink(worker.study_id, `study ${worker.study_id}`), ` · trial ${worker.trial_id}`)
      : el("span", { class: "note" }, "idle");
    return el(
      "tr",
      { "data-worker": worker.worker },
      el("td", {}, worker.worker),
      el("td", {}, worker.device),
      el("td", {}, ST.badge(busy ? "RUNNING" : "IDLE")),
      el("td", {}, trial),
      ageCell(worker.age_s),
    );
  }

  async function refresh() {
    const data = await ST.getJSON("/queues");
    document.querySelector("#queues tbody").replaceChildren(...data.queues.map(queueRow));
    document.querySelector("#workers tbody").replaceChildren(...data.workers.map(workerRow));
    ST.replace("queues-empty", data.queues.length ? null : el("div", { class: "empty" }, "No trial is dispatched."));
    ST.replace("workers-empty", data.workers.length ? null : el("div", { class: "empty" }, "No worker has a live heartbeat."));
    ST.replace(
      "heartbeats-note",
      data.heartbeats_available ? null : el("div", { class: "error" }, "Heartbeats are unavailable (Redis did not answer): running trials show as waiting."),
    );
  }

  ST.poll(refresh);
})();
