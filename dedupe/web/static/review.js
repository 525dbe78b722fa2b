// The review page: plain JavaScript, no build step, nothing from the network but this page's own server.
// Every text shown comes in through textContent (never innerHTML): file names are not markup.
"use strict";

const TOKEN = document.querySelector('meta[name="dedupe-token"]').content;
const main = document.getElementById("main");
const full = document.getElementById("full");
const fullStage = document.getElementById("full-stage");
const fullTitle = document.getElementById("full-title");
const keysDialog = document.getElementById("keys");
const undoButton = document.getElementById("nav-undo");

let view = "overview"; // overview | group | plan | result
let current = null; // the group shown
let listOffset = 0;
let fullAt = -1; // member shown full size
let fullLast = -1; // the member shown before it, for swapping
let busy = false;
let undoRun = null; // the run the top bar's Undo button names

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function get(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
  return r.json();
}

async function post(url, body) {
  const r = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-dedupe-token": TOKEN },
    body: JSON.stringify(body || {}),
  });
  const data = await r.json().catch(() => ({ error: `${r.status}` }));
  if (!r.ok) throw new Error(data.error || `${r.status}`);
  return data;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

function fail(e) {
  const note = h("p", { class: "error", role: "alert" }, String(e.message || e));
  main.prepend(note);
}

function plural(n, one, many) {
  return `${n.toLocaleString()} ${n === 1 ? one : many || one + "s"}`;
}

// --- overview ------------------------------------------------------------------------------------------------

async function showOverview() {
  view = "overview";
  current = null;
  const o = await get("/api/overview");
  refreshUndo(o.last_run);
  if (o.groups === 0) {
    show(h("section", { class: "card" }, h("h1", {}, "No duplicates found"),
      h("p", {}, "Nothing to review. Scan more folders with 'dedupe scan', or undo the last run.")));
    return;
  }
  const kinds = h("table", { class: "kinds" },
    h("thead", {}, h("tr", {}, h("th", {}, "Kind"), h("th", {}, "Groups"), h("th", {}, "Files"),
      h("th", {}, `Suggestions ${o.verb}`), h("th", {}, "Frees"))),
    h("tbody", {}, ...[["exact", "same bytes"], ["image", "same pixels"], ["near", "similar"]].map(([k, label]) => {
      const row = o.kinds[k];
      return h("tr", { class: `kind-${k}` }, h("td", {}, label), h("td", {}, row.groups.toLocaleString()),
        h("td", {}, row.files.toLocaleString()), h("td", {}, plural(row.steps, "file")), h("td", {}, sizeText(row.bytes)));
    })));
  const d = o.decided;
  const status = h("p", { class: "status" },
    `${plural(o.groups, "group")}, ${plural(o.files, "file")}. Decided: ${d.accepted} accepted, ` +
    `${d.not_duplicates} not duplicates, ${d.skipped} skipped; ${d.undecided} undecided.`);
  const accepts = h("div", { class: "accepts" },
    acceptCard("exact", "exact groups (same bytes or same pixels)", o.accept.exact, o.verb),
    acceptCard("near", "near groups (similar pictures)", o.accept.near, o.verb));
  const list = h("section", { class: "card" }, h("h2", {}, "Groups"), h("div", { id: "group-list" }));
  show(h("section", { class: "card overview" }, h("h1", {}, "Overview"), status, kinds,
    h("p", { class: "start" }, h("button", { type: "button", class: "primary", id: "start",
      onclick: () => go("#/group/1") }, "Review group by group →"),
      " or accept the suggestions of a whole kind below; nothing changes on disk before Apply.")),
    accepts, list);
  await loadList(listOffset);
}

function sizeText(n) {
  if (n < 1000) return `${n} bytes`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = n / 1000;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  return `${v.toFixed(1)} ${units[u]}`;
}

function acceptCard(kind, label, totals, verb) {
  const details = h("details", { class: "preview" }, h("summary", {}, "What this does"), h("div", { class: "steps" }, "…"));
  details.addEventListener("toggle", async () => {
    if (!details.open) return;
    const p = await get(`/api/accept-preview?kind=${kind}`);
    const items = p.items.map((s) => h("li", {}, h("span", { class: "verb act" }, p.verb), " ", h("code", {}, s.path),
      h("span", { class: "dim" }, ` (group ${s.group + 1}, keeping ${s.keeper})`)));
    const more = p.steps > items.length ? h("p", { class: "dim" }, `… and ${plural(p.steps - items.length, "more file")}`) : null;
    details.querySelector(".steps").replaceChildren(
      items.length ? h("ul", {}, ...items) : h("p", {}, "Nothing: no undecided group of this kind."), more || "");
  });
  const disabled = totals.groups === 0;
  return h("section", { class: `card accept accept-${kind}` },
    h("h2", {}, `Accept the suggestions for all ${label}`),
    h("p", {}, disabled ? "No undecided group of this kind." :
      `${plural(totals.groups, "group")}: ${verb} ${plural(totals.steps, "file")}, freeing ${totals.bytes_text}. ` +
      "They go into the plan; Apply shows it and asks before anything happens."),
    details,
    h("button", { type: "button", id: `accept-${kind}`, disabled, onclick: async () => {
      try {
        await post("/api/accept", { kind });
        await showOverview();
      } catch (e) { fail(e); }
    } }, `Accept ${plural(totals.groups, "group")}`));
}

async function loadList(offset) {
  const box = document.getElementById("group-list");
  if (!box) return;
  const page = await get(`/api/groups?offset=${offset}&limit=100`);
  listOffset = offset;
  const rows = page.groups.map((g) => h("tr", { class: `decision-${g.decision}` },
    h("td", {}, h("a", { href: `#/group/${g.index + 1}` }, `#${g.index + 1}`)),
    h("td", {}, g.match), h("td", {}, String(g.members)),
    h("td", {}, g.tie ? "tie: choose" : g.keeper),
    h("td", {}, g.steps ? `${g.steps} · ${g.bytes_text}` : "–"),
    h("td", { class: "decision" }, g.decision.replace("_", " "))));
  const nav = h("p", { class: "pager" },
    h("button", { type: "button", disabled: offset === 0, onclick: () => loadList(Math.max(0, offset - 100)) }, "← Previous 100"),
    ` groups ${offset + 1}–${offset + page.groups.length} of ${page.total.toLocaleString()} `,
    h("button", { type: "button", disabled: offset + 100 >= page.total, onclick: () => loadList(offset + 100) }, "Next 100 →"));
  box.replaceChildren(h("table", { class: "list" },
    h("thead", {}, h("tr", {}, h("th", {}, "Group"), h("th", {}, "Match"), h("th", {}, "Files"), h("th", {}, "Keeper"),
      h("th", {}, "Acts on"), h("th", {}, "Decision"))), h("tbody", {}, ...rows)), nav);
}

// --- one group ---------------------------------------------------------------------------------------------

const LABELS = { resolution: "Resolution", size: "Size", format: "Format", taken: "Taken", camera: "Camera", folder: "Folder" };
const ROLE = { keep: "KEEP", act: null, leave: "LEAVE", "keep-too": "KEEP TOO", tie: "TIE" };

async function showGroup(n) {
  renderGroup(await get(`/api/group/${n - 1}`));
}

function renderGroup(g) {
  view = "group";
  current = g;
  const cards = g.members.map((m) => memberCard(g, m));
  const verdict = g.tie
    ? h("p", { class: "rule tie" }, `The keeper rules tie: ${g.reason}. Click a picture or press its number to keep it.`)
    : h("p", { class: "rule" }, h("strong", {}, g.chosen ? "Keeper chosen by you: " : "Suggested keeper: "),
      h("code", {}, g.keeper), g.chosen ? null : h("span", { class: "why" }, ` — chosen by the rules: ${g.reason}`));
  const decision = h("p", { class: `decision-line decision-${g.decision}` },
    { undecided: "Undecided: Enter accepts what is shown.", accepted: `Accepted: ${g.verb} ${plural(g.steps, "file")} (${g.bytes_text}) when you apply.`,
      not_duplicates: "Not duplicates: remembered when you apply; nothing is acted on.", skipped: "Skipped: left as it is." }[g.decision]);
  const buttons = h("p", { class: "actions" },
    h("button", { type: "button", onclick: () => step(-1), disabled: g.index === 0 }, "← Previous"),
    h("button", { type: "button", class: "primary", id: "accept", onclick: () => decide("accepted") }, "Accept (Enter)"),
    h("button", { type: "button", id: "not-dups", onclick: () => decide("not_duplicates") }, "Not duplicates (n)"),
    h("button", { type: "button", id: "skip", onclick: () => decide("skipped") }, "Skip (s)"),
    h("button", { type: "button", onclick: () => step(1), disabled: g.index + 1 >= g.total }, "Next →"));
  show(h("section", { class: "group", dataset: { index: String(g.index) } },
    h("h1", {}, `Group ${g.index + 1} of ${g.total.toLocaleString()}: ${g.match}, ${plural(g.members.length, "file")}`),
    verdict, decision, g.skipped ? h("p", { class: "warn" }, g.skipped) : null, buttons,
    h("div", { class: "members" }, ...cards),
    h("p", { class: "hint" }, "Click a picture or press 1–9 to keep it; Shift+number keeps it too; Space for full size; ? for keys.")));
}

function memberCard(g, m) {
  const role = m.role;
  const badge = role === "act" ? m.note.split(" ")[0].toUpperCase() : ROLE[role];
  const img = h("img", { src: m.thumb, alt: m.name, loading: "lazy", decoding: "async" });
  img.addEventListener("error", () => img.replaceWith(h("span", { class: "no-thumb" }, "no preview")));
  const facts = h("dl", { class: "facts" }, ...Object.keys(LABELS).flatMap((k) => [
    h("dt", { class: g.differs.includes(k) ? "differs" : null }, LABELS[k]),
    h("dd", { class: g.differs.includes(k) ? `differs ${k}` : k, title: m[k] }, k === "folder" ? m.folder : m[k])]));
  const tooChecked = role === "keep-too";
  return h("figure", { class: `member role-${role}`, dataset: { index: String(m.index) } },
    h("button", { type: "button", class: "thumb", title: `Keep this one (${m.index + 1})`,
      onclick: () => chooseKeeper(m.index) }, img),
    h("figcaption", {},
      h("p", { class: "head" }, h("span", { class: "num" }, String(m.index + 1)), h("span", { class: `badge ${role}` }, badge),
        h("span", { class: "name", title: m.path }, m.name)),
      role === "act" && m.note === badge.toLowerCase() ? null : h("p", { class: "note" }, m.note), m.sidecars && m.sidecars.length ? h("p", { class: "dim" }, `with ${m.sidecars.join(", ")}`) : null,
      facts,
      h("p", { class: "why" }, `Matched: ${m.why}`, m.copies ? ` · byte copy ${m.copies}` : ""),
      h("p", { class: "card-actions" },
        h("button", { type: "button", onclick: () => chooseKeeper(m.index), disabled: role === "keep" }, "Keep this"),
        h("label", { class: "too" }, h("input", { type: "checkbox", checked: tooChecked, disabled: role === "keep" || role === "leave",
          onchange: () => toggleKeepToo(m.index) }), " keep too"),
        h("button", { type: "button", onclick: () => openFull(m.index) }, "Full size"))));
}

function keepTooOf(g) {
  return g.members.filter((m) => m.role === "keep-too").map((m) => m.index);
}

function keeperOf(g) {
  if (!g.chosen) return null;
  const k = g.members.find((m) => m.role === "keep");
  return k ? k.index : null;
}

async function sendDecision(state, keeper, keepToo) {
  if (busy) return;
  busy = true;
  try {
    const g = await post(`/api/group/${current.index}/decide`, { state, keeper, keep_too: keepToo, generation: current.generation });
    renderGroup(g);
    return g;
  } catch (e) { fail(e); } finally { busy = false; }
}

async function chooseKeeper(i) {
  if (!current || i >= current.members.length) return;
  const too = keepTooOf(current).filter((m) => m !== i);
  await sendDecision("accepted", i, too);
}

async function toggleKeepToo(i) {
  if (!current || i >= current.members.length) return;
  const m = current.members[i];
  if (m.role === "keep") return;
  let too = keepTooOf(current);
  too = too.includes(i) ? too.filter((x) => x !== i) : [...too, i];
  await sendDecision("accepted", keeperOf(current), too);
}

async function decide(state) {
  if (!current) return;
  const g = await sendDecision(state, state === "accepted" ? keeperOf(current) : null, state === "accepted" ? keepTooOf(current) : []);
  if (g && g.index + 1 < g.total) step(1);
}

function step(delta) {
  if (!current) return;
  const n = current.index + 1 + delta;
  if (n < 1 || n > current.total) return;
  go(`#/group/${n}`);
}

// --- full size ---------------------------------------------------------------------------------------------

function openFull(i) {
  if (!current) return;
  fullLast = fullAt >= 0 && fullAt !== i ? fullAt : (i === 0 ? 1 : 0);
  fullAt = i;
  fullStage.replaceChildren(...current.members.map((m) => {
    const img = h("img", { src: m.full, alt: m.name, class: m.index === i ? "shown" : null, dataset: { index: String(m.index) } });
    img.addEventListener("click", () => fullStage.classList.toggle("fit"));
    return img;
  }));
  full.hidden = false;
  showFull(i);
}

function showFull(i) {
  if (!current || i < 0 || i >= current.members.length) return;
  if (i !== fullAt) { fullLast = fullAt; fullAt = i; }
  for (const img of fullStage.querySelectorAll("img")) img.classList.toggle("shown", Number(img.dataset.index) === i);
  const m = current.members[i];
  fullTitle.textContent = `${i + 1}/${current.members.length} · ${m.role === "act" ? m.note : (ROLE[m.role] || "")} · ${m.resolution} · ${m.size} · ${m.path}`;
}

function closeFull() {
  full.hidden = true;
  fullStage.replaceChildren();
  fullAt = -1;
}

// --- apply and undo ----------------------------------------------------------------------------------------

async function showPlan() {
  view = "plan";
  current = null;
  const p = await get("/api/plan");
  const groups = p.groups.map((g) => h("section", { class: "plan-group" },
    h("h3", {}, h("a", { href: `#/group/${g.index + 1}` }, `Group ${g.index + 1}`), ": keep ", h("code", {}, g.keeper),
      h("span", { class: "why" }, ` (${g.reason})`)),
    g.skipped ? h("p", { class: "warn" }, `left alone: ${g.skipped}`) : null,
    h("ul", {}, ...g.steps.map((s) => h("li", { class: "step" }, h("span", { class: "verb act" }, p.verb), " ", h("code", {}, s.path),
      s.destination ? ` → ${s.destination}` : "", s.sidecars.length ? ` (with ${s.sidecars.length} sidecar file(s))` : "",
      h("span", { class: "dim" }, ` ${s.match}`))),
      ...g.left.map((l) => h("li", { class: "left" }, h("span", { class: "verb" }, "leave"), " ", h("code", {}, l.path), h("span", { class: "dim" }, `: ${l.reason}`))))));
  const nothing = p.files === 0 && p.not_duplicates.length === 0;
  const what = `${p.verb} ${plural(p.files, "file")} (${p.bytes_text})` +
    (p.not_duplicates.length ? `, remember ${plural(p.not_duplicates.length, "group")} as not duplicates` : "");
  const go_ = h("button", { type: "button", class: "danger", id: "confirm-apply", disabled: nothing, onclick: () => runApply(p.id) },
    nothing ? "Nothing to apply" : `Yes: ${what}`);
  show(h("section", { class: "card plan" }, h("h1", {}, "Apply"),
    h("p", {}, nothing ? "No group is accepted yet: accept groups one by one or a whole kind in the overview." :
      `This is the plan: ${what}. Every file and its keeper are checked again right before acting; each act is journaled, so Undo reverses it.`),
    h("p", { class: "actions" }, go_, h("button", { type: "button", onclick: () => go("#/") }, "Back")),
    h("div", { id: "progress" }), ...groups));
}

async function runApply(id) {
  const button = document.getElementById("confirm-apply");
  button.disabled = true;
  const bar = h("progress", { max: "1", value: "0" });
  const label = h("span", {}, " applying…");
  document.getElementById("progress").replaceChildren(bar, label);
  const timer = setInterval(async () => {
    const pr = await get("/api/progress").catch(() => null);
    if (pr && pr.total) { bar.max = pr.total; bar.value = pr.done; label.textContent = ` ${pr.done} of ${pr.total}`; }
  }, 300);
  try {
    const r = await post("/api/apply", { plan: id });
    showResult(r, false);
  } catch (e) {
    fail(e);
    button.disabled = false;
  } finally { clearInterval(timer); }
}

function showResult(r, undoing) {
  view = "result";
  const rows = r.results.map((x) => h("tr", { class: `state-${x.state}` }, h("td", {}, x.said), h("td", {}, h("code", {}, x.path)),
    h("td", {}, x.destination || ""), h("td", {}, x.reason)));
  const c = r.counts;
  const undoable = !undoing && r.action !== "delete";
  const summary = undoing
    ? `Run ${r.run} undone${r.complete ? "" : " in part"}: ${c.done} restored, ${c.skipped} with nothing to do, ${c.failed} could not be restored.`
    : `Run ${r.run}: ${c.done} done (${r.freed_text}), ${c.skipped} skipped, ${c.failed} failed. ${undoable ? "Undo reverses it." : "Permanent deletes cannot be undone."}`;
  show(h("section", { class: "card result", id: "result" }, h("h1", {}, undoing ? "Undone" : "Applied"), h("p", { class: "summary" }, summary),
    h("p", { class: "actions" },
      undoable ? h("button", { type: "button", id: "undo-run", onclick: () => runUndo(r.run) }, `Undo run ${r.run}`) : null,
      h("button", { type: "button", onclick: () => go("#/") }, "Overview")),
    h("table", { class: "results" }, h("thead", {}, h("tr", {}, h("th", {}, "Result"), h("th", {}, "File"), h("th", {}, "Now at"), h("th", {}, "Why"))),
      h("tbody", {}, ...rows))));
  get("/api/overview").then((o) => refreshUndo(o.last_run)).catch(() => {});
}

// The run the button names: if another came since (another tab, the terminal), that one is not undone by it.
async function runUndo(run) {
  if (busy) return;
  busy = true;
  try {
    const r = await post("/api/undo", { run });
    showResult(r, true);
  } catch (e) { fail(e); } finally { busy = false; }
}

function refreshUndo(run) {
  undoRun = run ? run.id : null;
  undoButton.hidden = !run;
  if (run) undoButton.textContent = `Undo run ${run.id} (${run.action}, ${plural(run.done, "file")})`;
}

// --- navigation and keys -----------------------------------------------------------------------------------

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  closeFull();
  const m = location.hash.match(/^#\/group\/(\d+)$/);
  try {
    if (m) await showGroup(Number(m[1]));
    else if (location.hash === "#/apply") await showPlan();
    else await showOverview();
  } catch (e) { fail(e); }
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (keysDialog.open) { if (e.key === "Escape" || e.key === "?") { keysDialog.close(); e.preventDefault(); } return; }
  const tag = (e.target && e.target.tagName) || "";
  if (tag === "INPUT" || tag === "TEXTAREA") return;
  if (e.key === "?") { keysDialog.showModal(); e.preventDefault(); return; }
  if (!full.hidden) {
    if (e.key === "Escape" || e.key === " ") closeFull();
    else if (e.key === "ArrowRight" || e.key === "l") showFull(Math.min(fullAt + 1, current.members.length - 1));
    else if (e.key === "ArrowLeft" || e.key === "h") showFull(Math.max(fullAt - 1, 0));
    else if (e.key === "x" || e.key === "Tab") showFull(fullLast);
    else if (e.key === "f") fullStage.classList.toggle("fit");
    else return;
    e.preventDefault();
    return;
  }
  if (e.key === "Escape") { if (view !== "overview") go("#/"); e.preventDefault(); return; }
  if (view !== "group" || !current) {
    if (view === "overview" && (e.key === "ArrowRight" || e.key === "j")) { go("#/group/1"); e.preventDefault(); }
    return;
  }
  const digit = /^Digit([1-9])$/.exec(e.code || "");
  if (digit && e.shiftKey) { toggleKeepToo(Number(digit[1]) - 1); e.preventDefault(); return; }
  if (/^[1-9]$/.test(e.key)) { chooseKeeper(Number(e.key) - 1); e.preventDefault(); return; }
  if (tag === "BUTTON" && (e.key === "Enter" || e.key === " ")) return; // the focused button's own click
  switch (e.key) {
    case "ArrowRight": case "j": step(1); break;
    case "ArrowLeft": case "k": step(-1); break;
    case " ": openFull(0); break;
    case "Enter": case "a": decide("accepted"); break;
    case "n": decide("not_duplicates"); break;
    case "s": decide("skipped"); break;
    default: return;
  }
  e.preventDefault();
});

document.getElementById("full-close").addEventListener("click", closeFull);
document.getElementById("full-prev").addEventListener("click", () => showFull(Math.max(fullAt - 1, 0)));
document.getElementById("full-next").addEventListener("click", () => showFull(Math.min(fullAt + 1, current.members.length - 1)));
document.getElementById("full-swap").addEventListener("click", () => showFull(fullLast));
document.getElementById("full-fit").addEventListener("click", () => fullStage.classList.toggle("fit"));
document.getElementById("keys-close").addEventListener("click", () => keysDialog.close());
document.getElementById("nav-keys").addEventListener("click", () => keysDialog.showModal());
document.getElementById("nav-overview").addEventListener("click", () => go("#/"));
document.getElementById("nav-apply").addEventListener("click", () => go("#/apply"));
undoButton.addEventListener("click", () => runUndo(undoRun));
window.addEventListener("hashchange", route);
route();
