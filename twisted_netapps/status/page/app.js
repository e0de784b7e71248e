"use strict";
// The status page: the overview from /api/overview and /events (Server-Sent
// Events), a service's counters, views and recent events on click. No build
// step, no libraries.
const MAX_EVENTS = 200;
let selected = null;
let last = null;

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
};
const fmtTime = (t) => new Date(t * 1000).toLocaleTimeString();
const fmtUptime = (s) => {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return (d ? d + "d " : "") + (h ? h + "h " : "") + m + "m " + (s % 60) + "s";
};
const num = (v) => el("td", { className: "num", textContent: v === undefined ? "" : String(v) });

function renderOverview(doc) {
  last = doc;
  $("daemon").textContent = `pid ${doc.pid} · version ${doc.version} · up ${fmtUptime(doc.uptime)}`;
  const body = $("services").tBodies[0];
  body.replaceChildren(...doc.services.map((s) => {
    const skip = new Set(["connections", "requests", "errors", "bytes_in", "bytes_out", "active_connections"]);
    const extra = Object.entries(s.counters).filter(([k, v]) => !skip.has(k) && v)
      .map(([k, v]) => `${k}=${v}`).join(" ");
    const row = el("tr", { className: s.name === selected ? "selected" : "" },
      el("td", { textContent: s.name }), el("td", { textContent: s.listeners.join(", ") }),
      num(s.active_connections), num(s.rates.connections ?? 0), num(s.rates.requests ?? 0),
      num(s.errors), el("td", { textContent: extra }));
    row.dataset.service = s.name;
    row.addEventListener("click", () => select(s.name));
    return row;
  }));
  if (selected) updateCounters(doc.services.find((s) => s.name === selected));
}

function updateCounters(service, docs) {
  if (!service) return;
  const body = $("counters").tBodies[0];
  if (docs) body.dataset.docs = JSON.stringify(docs);
  const meaning = JSON.parse(body.dataset.docs || "{}");
  body.replaceChildren(...Object.entries(service.counters).map(([k, v]) =>
    el("tr", {}, el("td", { textContent: k }), num(v), num(service.rates?.[k] ?? ""),
      el("td", { textContent: meaning[k] || "" }))));
}

function eventLine(e) {
  const fields = Object.entries(e).filter(([k]) => !["t", "service", "kind"].includes(k))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
  return el("li", {}, `${fmtTime(e.t)} `, el("span", { className: "svc", textContent: e.service }), " ",
    el("span", { className: "kind", textContent: e.kind }), ` ${fields}`);
}

function prepend(list, node) {
  list.prepend(node);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

async function select(name) {
  selected = name;
  $("detail").hidden = false;
  $("detail-title").textContent = name;
  $("view-output").replaceChildren();
  const response = await fetch(`/api/service/${encodeURIComponent(name)}`);
  const doc = await response.json();
  updateCounters({ counters: doc.counters, rates: last?.services.find((s) => s.name === name)?.rates }, doc.docs);
  $("recent").replaceChildren(...doc.recent.slice().reverse().map(eventLine));
  $("views").replaceChildren(...doc.views.map((v) => {
    const inputs = v.params.map((p) => el("input", { name: p, placeholder: p, size: 24 }));
    const button = el("button", { textContent: v.title });
    const form = el("form", {}, ...inputs, button);
    form.addEventListener("submit", (ev) => { ev.preventDefault(); showView(name, v.name, inputs); });
    return form;
  }));
  if (last) renderOverview(last);
}

function table(rows) {
  if (!Array.isArray(rows) || !rows.length || typeof rows[0] !== "object") {
    return el("pre", { textContent: JSON.stringify(rows, null, 1) });
  }
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return el("table", {}, el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { textContent: c })))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...columns.map((c) =>
      el("td", { textContent: r[c] === undefined ? "" : (typeof r[c] === "object" ? JSON.stringify(r[c]) : String(r[c])) }))))));
}

async function showView(service, view, inputs) {
  const query = new URLSearchParams(inputs.map((i) => [i.name, i.value]));
  const response = await fetch(`/api/view/${encodeURIComponent(service)}/${encodeURIComponent(view)}?${query}`);
  const doc = await response.json();
  $("view-output").replaceChildren(doc.error ? el("p", { className: "err", textContent: doc.error })
    : el("div", {}, el("p", { textContent: `${view} at ${fmtTime(doc.at)}` }), table(doc.data)));
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("open", () => { $("live").className = "on"; });
  source.addEventListener("error", () => { $("live").className = "off"; });
  source.addEventListener("overview", (m) => renderOverview(JSON.parse(m.data)));
  source.addEventListener("event", (m) => {
    const e = JSON.parse(m.data);
    prepend($("events"), eventLine(e));
    if (e.service === selected) prepend($("recent"), eventLine(e));
  });
  source.addEventListener("dropped", (m) => {
    $("dropped").textContent = `(${JSON.parse(m.data).count} events dropped: the page fell behind)`;
  });
}

fetch("/api/overview").then((r) => r.json()).then(renderOverview);
connect();
