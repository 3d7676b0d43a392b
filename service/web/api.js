// scaletune dashboard: JSON API access, number formatting, DOM helpers and polling.
// Every page reads the service's JSON API only (same origin); nothing is loaded from
// elsewhere. Shared names live on window.Scaletune (ST).
//
// The API wants `Authorization: Bearer <token>`. The token is typed into the form in the
// page header and kept in sessionStorage: this tab only, gone when it closes, never in a
// URL or a cookie.
"use strict";

const ST = (window.Scaletune = window.Scaletune || {});

ST.POLL_SECONDS = Number(new URLSearchParams(location.search).get("poll")) || 3;

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

const TOKEN_KEY = "scaletune.token";

ST.token = () => sessionStorage.getItem(TOKEN_KEY) || "";

ST.setToken = function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
};

ST.getJSON = async function getJSON(path) {
  const headers = { accept: "application/json" };
  if (ST.token()) headers.authorization = `Bearer ${ST.token()}`;
  const response = await fetch(path, { headers });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail || detail;
    } catch (_) {
      // a body that is not JSON: keep the status text
    }
    if (response.status === 401) detail = `${detail} (enter a token at the top of the page)`;
    throw new ApiError(response.status, detail);
  }
  return response.json();
};

// Every page of a {data, count} list endpoint, `limit` rows per request.
ST.getAll = async function getAll(path, limit) {
  const sep = path.includes("?") ? "&" : "?";
  const rows = [];
  for (;;) {
    const page = await ST.getJSON(`${path}${sep}offset=${rows.length}&limit=${limit}`);
    rows.push(...page.data);
    if (page.data.length === 0 || rows.length >= page.count) return rows;
  }
};

// -- formatting --------------------------------------------------------------------------

const SI = [
  [1e15, "P"],
  [1e12, "T"],
  [1e9, "G"],
  [1e6, "M"],
  [1e3, "k"],
];

ST.fmt = {
  // Significant digits, without trailing zeros; exponent form for very large/small.
  num(x, digits = 4) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (typeof x !== "number") return String(x);
    const a = Math.abs(x);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(digits - 2).replace("e+", "e");
    return String(Number(x.toPrecision(digits)));
  },
  // 1.2k, 3.4M, 5.6G (for counts, FLOPs, parameters, tokens).
  si(x) {
    if (x === null || x === undefined) return "–";
    const a = Math.abs(x);
    for (const [scale, suffix] of SI) {
      if (a >= scale) return `${Number((x / scale).toPrecision(3))}${suffix}`;
    }
    return ST.fmt.num(x, 3);
  },
  seconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Number((s / 60).toPrecision(3))} min`;
    if (s < 86400) return `${Number((s / 3600).toPrecision(3))} h`;
    return `${Number((s / 86400).toPrecision(3))} d`;
  },
  ago(unixSeconds) {
    return unixSeconds ? `${ST.fmt.seconds(Math.max(0, Date.now() / 1000 - unixSeconds))} ago` : "–";
  },
  value(v) {
    return typeof v === "number" ? ST.fmt.num(v) : String(v);
  },
};

// -- DOM ---------------------------------------------------------------------------------

// el("td", {class: "num", title: "..."}, "text", childNode, ...)
ST.el = function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

ST.badge = function badge(state) {
  return ST.el("span", { class: `badge state-${String(state).toLowerCase()}` }, state);
};

ST.progressBar = function progressBar(fraction, label) {
  const pct = Math.round(100 * Math.min(1, Math.max(0, fraction)));
  return ST.el(
    "div",
    { class: "progress", title: `${pct}% of the budget used` },
    ST.el("div", { class: "progress-track" }, ST.el("div", { class: "progress-fill", style: `width:${pct}%` })),
    ST.el("span", { class: "progress-label" }, `${pct}% · ${label}`),
  );
};

// "12 / 64 trials · 3.1k / 10k GPU-s": whichever limits the budget sets.
ST.budgetText = function budgetText(progress) {
  const parts = [];
  if (progress.max_trials) parts.push(`${progress.dispatched} / ${progress.max_trials} trials`);
  else parts.push(`${progress.dispatched} trials`);
  const spent = ST.fmt.si(progress.spent_cost);
  parts.push(progress.max_cost ? `${spent} / ${ST.fmt.si(progress.max_cost)} GPU-s` : `${spent} GPU-s`);
  return parts.join(" · ");
};

ST.replace = function replace(id, ...children) {
  const node = document.getElementById(id);
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
};

// -- polling -----------------------------------------------------------------------------

// What the #live indicator says when a refresh failed: the HTTP status and its meaning,
// that the API did not answer at all (fetch rejects with a TypeError), or a page error.
ST.failureText = function failureText(error) {
  const what = { 401: "not signed in", 403: "not allowed", 404: "not found", 503: "database unavailable" };
  if (error instanceof ApiError) {
    const meaning = what[error.status] || (error.status >= 500 ? "server error" : "refused");
    return `failed · HTTP ${error.status} ${meaning}`;
  }
  if (error instanceof TypeError && /fetch/i.test(error.message)) return "failed · no answer from the API";
  return "failed · page error (see the browser console)";
};

// Run `refresh` now and every ST.POLL_SECONDS; the #live indicator says when data last
// arrived or why the last refresh failed, and #error shows that failure's message until
// a refresh succeeds.
ST.poll = function poll(refresh) {
  const live = document.getElementById("live");
  const tick = async () => {
    try {
      await refresh();
      ST.replace("error");
      live.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
      live.className = "live ok";
    } catch (error) {
      ST.replace("error", ST.el("div", { class: "error" }, String(error.message || error)));
      live.textContent = ST.failureText(error);
      live.className = "live stale";
      console.error(error);
    } finally {
      setTimeout(tick, ST.POLL_SECONDS * 1000);
    }
  };
  tick();
};

ST.studyLink = function studyLink(id, text) {
  return ST.el("a", { href: `study.html?id=${id}` }, text ?? `#${id}`);
};

// -- the token form in the header ----------------------------------------------------------

// A password field: the token is never shown, and the page reloads to use it.
function tokenForm() {
  const input = ST.el("input", {
    type: "password",
    id: "token",
    autocomplete: "off",
    placeholder: ST.token() ? "API token (set)" : "API token",
  });
  const use = (event) => {
    event.preventDefault();
    ST.setToken(input.value.trim());
    location.reload();
  };
  const forget = () => {
    ST.setToken("");
    location.reload();
  };
  return ST.el(
    "form",
    { id: "token-form", class: "token", onsubmit: use },
    input,
    ST.el("button", { type: "submit", id: "token-use" }, "use"),
    ST.token() ? ST.el("button", { type: "button", id: "token-forget", onclick: forget }, "forget") : null,
  );
}

document.querySelector("header.top")?.insertBefore(tokenForm(), document.getElementById("live"));
