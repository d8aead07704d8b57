// The Skerry fleet dashboard: renders the hub's snapshot (/api/fleet, then /api/stream events). Read-only.
"use strict";
let snapshot = null;
let selected = null;
let detail = null; // the selected cluster with its objects (/api/clusters/NAME)

function loadDetail() {
  if (!selected) return;
  fetch(`/api/clusters/${encodeURIComponent(selected)}`).then((r) => (r.ok ? r.json() : null))
    .then((d) => { if (d && d.name === selected) { detail = d; renderDetail(); } });
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v; else if (k === "onclick") node.onclick = v; else node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}
const short = (s, n = 12) => (s || "").replace(/^sha256:/, "").slice(0, n);
const badge = (text, id) => el("span", { class: `badge ${text}`, "data-testid": id }, text);

function expiry(desired) {
  if (!desired) return "-";
  const s = desired.expires_in_seconds;
  const text = s < 0 ? "expired" : s < 3600 ? `${Math.round(s / 60)} min` : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  return el("span", { class: s < 86400 ? "expiring" : "", title: desired.expires }, text);
}

function clusterRow(c) {
  const d = c.desired, a = c.applied;
  return el("tr", { class: "cluster", "data-testid": `cluster-${c.name}`, onclick: () => { selected = c.name; detail = null; render(); loadDetail(); } },
    el("td", {}, el("strong", {}, c.name)),
    el("td", {}, badge(c.sync, `sync-${c.name}`),
      c.connected === false ? el("div", { class: "offline", "data-testid": `offline-${c.name}` }, "agent not connected") : ""),
    el("td", {}, badge(c.health, `health-${c.name}`), c.health_reason ? el("div", { class: "muted" }, c.health_reason) : ""),
    el("td", { "data-testid": `applied-${c.name}` }, a ? `${a.label} ` : "-", a ? el("code", {}, short(a.revision, 8)) : ""),
    el("td", { "data-testid": `desired-${c.name}` }, d ? `${d.label} ` : "-", d ? el("code", {}, short(d.revision, 8)) : ""),
    el("td", { class: "drift", "data-testid": `drift-${c.name}` }, c.drift || ""),
    el("td", { class: "err", "data-testid": `error-${c.name}` }, c.last_error ? `${c.last_error.source}: ${c.last_error.message}` : ""),
    el("td", {}, expiry(d)),
  );
}

function renderGroups() {
  const byName = Object.fromEntries(snapshot.clusters.map((c) => [c.name, c]));
  const box = document.getElementById("groups");
  box.replaceChildren();
  if (!snapshot.groups.length) box.append(el("p", { class: "muted" }, "No clusters yet."));
  for (const g of snapshot.groups) {
    const head = el("tr", {}, ...["Cluster", "Sync", "Health", "Applied", "Desired", "Drift", "Last error", "Metadata expires in"].map((h) => el("th", {}, h)));
    box.append(el("div", { class: "group", "data-testid": `group-${g.region}-${g.env}` },
      el("h3", {}, `region ${g.region} · environment ${g.env}`),
      el("table", {}, el("thead", {}, head), el("tbody", {}, g.clusters.map((n) => clusterRow(byName[n]))))));
  }
}

function renderDetail() {
  const section = document.getElementById("detail");
  const row = snapshot.clusters.find((x) => x.name === selected);
  if (!row) { section.hidden = true; return; }
  const c = detail && detail.name === row.name ? detail : { ...row, objects: [], objects_total: row.objects_total };
  section.hidden = false;
  document.getElementById("detail-name").textContent = c.name;
  const body = document.getElementById("detail-body");
  const labels = Object.entries(c.labels).map(([k, v]) => `${k}=${v}`).join(", ");
  const conds = el("table", {}, el("tr", {}, ["Condition", "Status", "Reason", "Message"].map((h) => el("th", {}, h))),
    c.conditions.map((x) => el("tr", {}, el("td", {}, x.type), el("td", {}, x.status), el("td", {}, x.reason), el("td", {}, x.message))));
  const objs = el("table", { "data-testid": `objects-${c.name}` },
    el("tr", {}, ["Kind", "Namespace", "Name", "Last action", "Message"].map((h) => el("th", {}, h))),
    c.objects.map((o) => el("tr", {}, el("td", {}, o.group ? `${o.kind}.${o.group}` : o.kind), el("td", {}, o.namespace), el("td", {}, o.name),
      el("td", {}, o.action), el("td", { class: o.action === "failed" ? "err" : "" }, o.message))));
  const more = c.objects_total > c.objects.length ? el("p", { class: "muted" }, `…and ${c.objects_total - c.objects.length} more`) : "";
  body.replaceChildren(
    el("p", {}, `labels: ${labels || "none"} · paths: ${c.paths.join(", ") || "none"}`),
    el("p", {}, "desired ", el("code", {}, c.desired ? c.desired.digest : "none"), " · applied ", el("code", {}, c.applied ? c.applied.digest : "none"),
      c.applied ? ` · reported ${c.applied.reported_at} by agent ${c.applied.agent_version}` : ""),
    el("h3", {}, "Conditions"), conds, el("h3", {}, `Objects (${c.objects_total})`), objs, more);
}

function renderApps() {
  const box = document.getElementById("apps");
  box.replaceChildren();
  for (const app of snapshot.apps) {
    const envs = snapshot.environments.filter((e) => app.environments[e]).concat(Object.keys(app.environments).filter((e) => !snapshot.environments.includes(e)));
    const rows = envs.flatMap((e) => app.environments[e].map((x) => el("tr", { "data-testid": `freight-${app.name}-${e}-${x.cluster}` },
      el("td", {}, e), el("td", {}, x.cluster), el("td", {}, x.path),
      el("td", {}, x.desired_release ? `${x.desired_release} ` : "-", el("code", {}, short(x.desired_revision, 8))),
      el("td", {}, el("code", {}, short(x.applied_revision, 8))), el("td", {}, badge(x.sync, "")),
      el("td", {}, x.history.slice(-5).reverse().map((h) => el("div", {}, el("code", {}, short(h.revision, 8)), ` ${h.label} at ${h.at}`))))));
    box.append(el("div", { class: "group", "data-testid": `app-${app.name}` }, el("h3", {}, app.name),
      el("table", {}, el("tr", {}, ["Environment", "Cluster", "Path", "Desired", "Applied", "Sync", "Release history"].map((h) => el("th", {}, h))), rows)));
  }
  const promos = snapshot.promotions;
  box.append(el("div", { class: "group", "data-testid": "promotions" }, el("h3", {}, "Promotion history"),
    promos === null ? el("p", { class: "muted" }, "This hub has no promotion service.")
      : !promos.length ? el("p", { class: "muted" }, "No promotions yet (skerry promote APP --from ENV --to ENV).")
      : el("table", {}, el("tr", {}, ["When", "App", "From → to", "Kind", "State", "Commit", "By", "Approved by"].map((h) => el("th", {}, h))),
          promos.map((p) => el("tr", {}, el("td", {}, p.at || ""), el("td", {}, p.app), el("td", {}, `${p.from} → ${p.to}`), el("td", {}, p.kind),
            el("td", {}, p.state), el("td", {}, el("code", {}, short(p.commit, 8))), el("td", {}, p.by), el("td", {}, (p.approved_by || []).join(", ")))))));
}

function render() {
  if (!snapshot) return;
  document.getElementById("revision").textContent = short(snapshot.revision, 12) || "-";
  const s = snapshot.summary;
  const agents = snapshot.connected_agents === null ? "" : ` · ${snapshot.connected_agents} agents connected`;
  document.getElementById("summary").textContent = `${s.clusters} clusters · ${s.sync.Synced || 0} synced · ${s.health.Healthy || 0} healthy${agents}`;
  const banner = document.getElementById("banner");
  const problem = snapshot.fleet_error || snapshot.source_error;
  banner.hidden = !problem;
  banner.textContent = problem || "";
  renderGroups(); renderDetail(); renderApps();
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/stream");
  source.addEventListener("fleet", (ev) => { snapshot = JSON.parse(ev.data); render(); loadDetail(); });
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
}

fetch("/api/fleet").then((r) => (r.ok ? r.json() : null)).then((s) => { if (s) { snapshot = s; render(); } });
connect();
