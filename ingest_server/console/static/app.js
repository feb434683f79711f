"use strict";
// factory-evidence web console: one page, no build step, no external resources.
// Talks to /api/v1 with the bearer token of a console login (sessionStorage: one tab's
// session ends with the tab). Every text from the server is put in the page as text,
// never as HTML.
(() => {
  const session = window.sessionStorage;
  const prefs = window.localStorage;
  const ISO = (d) => d.toISOString().slice(0, 10);
  const addDays = (iso, n) => { const d = new Date(iso + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + n); return ISO(d); };

  // The period and baseline are the user's last choice (kept when applied); until there is
  // one, the defaults of defaultPeriod(), set once the site's time zone is known.
  const S = {
    token: session.getItem("fe.token"),
    me: JSON.parse(session.getItem("fe.me") || "null"),
    lang: prefs.getItem("fe.lang") || "zh",
    ent: prefs.getItem("fe.ent"),
    from: prefs.getItem("fe.from") || null,
    to: prefs.getItem("fe.to") || null,
    bfrom: prefs.getItem("fe.bfrom"),
    bto: prefs.getItem("fe.bto"),
    // the bar's site and process filters ("": all)
    site: prefs.getItem("fe.site") || "",
    proc: prefs.getItem("fe.proc") || "",
    ents: null, info: {}, timer: null, renderId: 0,
  };

  const t = (k) => (window.I18N[S.lang] || {})[k] ?? window.I18N.zh[k] ?? k;
  const nm = (o) => (S.lang === "en" ? o.name_en || o.name : o.name || o.name_en) || o.id || "";
  // a text the server gives in both languages: `key` in English, `key_zh` in Chinese
  const tx = (o, key) => (S.lang === "zh" ? o[`${key}_zh`] || o[key] : o[key]);
  // a word of a closed vocabulary (a tag role, a counter flag) in the console's language,
  // the raw word where the catalogue has none
  const word = (prefix, w) => (window.I18N.zh[`${prefix}_${w}`] ? t(`${prefix}_${w}`) : w);

  // -- DOM ------------------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  // A table of rows; one with an id gets a CSV download of what it shows (every column but
  // those marked `csv: false`, the cells' text as read; a number as a spreadsheet reads one:
  // rounded as shown, without the grouping commas, "—" empty).
  function table(cols, rows, attrs) {
    const el = h("table", attrs || {},
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", { class: c.num ? "num" : null, "data-nocsv": c.csv === false }, c.label)))),
      h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, cols.map((c) => h("td", { class: c.num ? "num" : null }, c.get(r)))))
        : h("tr", { "data-empty": true }, h("td", { colspan: cols.length, class: "muted" }, t("none")))));
    if (!attrs?.id) return el;
    return h("div", { class: "tablebox" },
      h("button", { class: "link csv", "data-csv": attrs.id, title: t("csv_title"), onclick: () => saveCsv(el, `${attrs.id}-${S.ent}-${S.from}-${S.to}.csv`) }, `⤓ ${t("csv")}`),
      el);
  }
  // UTF-8 with a byte-order mark, so that spreadsheet programs read the Chinese
  const csvCell = (v) => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  function csvText(cell) {
    const v = cell.textContent.trim();
    if (!cell.classList.contains("num")) return v;
    if (v === "—") return "";
    return /^[-+]?\d{1,3}(,\d{3})*(\.\d+)?( ?%)?$/.test(v) ? v.replace(/,/g, "").replace(" %", "%") : v;
  }
  function saveCsv(el, name) {
    const keep = [...el.tHead.rows[0].cells].map((c) => !c.hasAttribute("data-nocsv"));
    const lines = [...el.rows].filter((r) => !r.hasAttribute("data-empty"))
      .map((r) => [...r.cells].filter((c, i) => keep[i]).map((c) => csvCell(csvText(c))).join(","));
    saveBlob(new Blob([`\ufeff${lines.join("\r\n")}\r\n`], { type: "text/csv;charset=utf-8" }), name);
  }
  // a catalogue text with a command in it: the command as a literal, in <code>
  const withCmd = (text, cmd) => text.split("{cmd}").flatMap((x, i) => (i ? [h("code", {}, cmd), x] : [x]));
  const errorBox = (e) => h("div", { class: "error", role: "alert" }, `${t("error")}: ${e.message || e}`);

  // -- numbers and times ----------------------------------------------------------------
  function num(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    const a = Math.abs(v);
    const d = digits ?? (a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : a === 0 ? 0 : 4);
    return Number(v).toLocaleString(S.lang === "zh" ? "zh-CN" : "en-US", { maximumFractionDigits: d, minimumFractionDigits: 0 });
  }
  function bytesText(n) {
    if (n === null || n === undefined) return "—";
    if (n < 1024) return `${num(n, 0)} B`;
    if (n < 1024 * 1024) return `${num(n / 1024, 1)} KB`;
    if (n < 1024 ** 3) return `${num(n / 1024 ** 2, 1)} MB`;
    return `${num(n / 1024 ** 3, 2)} GB`;
  }
  const pct = (f) => (f === null || f === undefined ? "—" : `${num(f * 100, 1)} %`);
  const tz = () => (S.info[S.ent]?.sites?.[0]?.timezone) || "Asia/Shanghai";
  // the site's time zone as people read it: its UTC offset in Chinese, its name in English
  function zone() {
    if (S.lang !== "zh") return tz();
    const part = new Intl.DateTimeFormat("en-US", { timeZone: tz(), timeZoneName: "shortOffset" }).formatToParts(new Date()).find((p) => p.type === "timeZoneName");
    return `${t("site_time")} ${(part?.value || "GMT").replace("GMT", "UTC")}`;
  }
  // wall-clock time at the site: plotly's date axes have no time zones
  function local(iso) {
    const f = new Intl.DateTimeFormat("sv-SE", { timeZone: tz(), year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
    return f.format(new Date(iso)).replace(",", "");
  }
  // the instant of 00:00 at the site on a date (fixed-offset zones, as China's)
  function siteMidnight(dateIso) {
    const guess = new Date(`${dateIso}T00:00:00Z`);
    const wall = new Date(`${local(guess.toISOString()).replace(" ", "T")}Z`);
    return new Date(guess.getTime() - (wall - guess));
  }
  // today's date at the site (YYYY-MM-DD)
  const siteToday = () => new Intl.DateTimeFormat("sv-SE", { timeZone: tz(), year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date());
  // The default period: the 14 days that ended at the site's last midnight, the baseline
  // the 14 days before. A period that includes today is not over: a report of it is
  // partial and stops verifying as soon as later data arrive (docs/console.md).
  function defaultPeriod() {
    const to = addDays(siteToday(), -1);
    const from = addDays(to, -13);
    if (!S.to) { S.from = from; S.to = to; }
    if (S.bfrom === null && S.bto === null) { S.bto = addDays(S.from, -1); S.bfrom = addDays(S.bto, -13); }
  }
  const periodOpen = () => Boolean(S.to) && S.to >= siteToday();
  function seconds(s) {
    if (s === null || s === undefined) return "—";
    if (s < 120) return `${num(s, 0)} ${t("s")}`;
    if (s < 7200) return `${num(s / 60, 1)} ${t("min")}`;
    return `${num(s / 3600, 1)} ${t("h")}`;
  }

  // -- API ------------------------------------------------------------------------------
  async function api(path, opts = {}) {
    const headers = {};
    if (S.token) headers.Authorization = `Bearer ${S.token}`;
    if (opts.body !== undefined || opts.raw !== undefined) headers["Content-Type"] = opts.type || "application/json";
    // opts.raw: a text sent as it is (a report file's exact bytes, a YAML file with
    // opts.type), never re-serialised
    const body = opts.raw !== undefined ? opts.raw : opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const r = await fetch(`/api/v1${path}`, { method: opts.method || "GET", headers, body });
    if (opts.blob && r.ok) return r.blob();
    const type = r.headers.get("content-type") || "";
    const data = type.includes("json") ? await r.json() : await r.text();
    if (r.status === 401 && path !== "/login") { logout(); throw new Error(t("wrong_login")); }
    if (!r.ok) {
      // the server's own Chinese where it has one, else what its code means, from the catalogue
      const er = (data && data.error) || {};
      const known = window.I18N.zh[`err_${er.code}`] ? t(`err_${er.code}`) : null;
      const text = S.lang === "zh" ? er.message_zh || known || t("err_http").replace("{n}", r.status) : er.message || `${r.status} ${r.statusText}`;
      const e = new Error(text);
      e.status = r.status;
      e.detail = er.message;  // the server's own words: which field, why (shown beside a generic text)
      throw e;
    }
    return data;
  }
  const q = (o) => Object.entries(o).filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
  const E = () => `/enterprises/${encodeURIComponent(S.ent)}`;
  const hasBaseline = () => Boolean(S.bfrom && S.bto);
  const kpisCache = {};
  // the figures of the bar's period, of the chosen site and process (energy, water and
  // carbon are metered per site: `byProcess` false leaves the process out)
  function kpis(byProcess = true) {
    const proc = byProcess ? S.proc : "";
    const key = [S.ent, S.from, S.to, S.bfrom, S.bto, S.site, proc].join("|");
    if (!kpisCache[key]) {
      kpisCache[key] = api(`${E()}/kpis?${q({ from: S.from, to: S.to, baseline_from: hasBaseline() ? S.bfrom : null, baseline_to: hasBaseline() ? S.bto : null, site: S.site, process: proc })}`);
      kpisCache[key].catch(() => delete kpisCache[key]);
    }
    return kpisCache[key];
  }
  // a row passes the bar's filters when it is of the chosen site and process
  const inScope = (e) => (!S.site || e.site === S.site) && (!S.proc || e.process === S.proc);
  // a line saying what the filters leave as they are on this page
  // (as a list: replaceChildren and append write a null as the text "null")
  const scopeNote = (key) => (S.site || S.proc ? [h("p", { class: "muted", "data-testid": "scope-note" }, t(key))] : []);
  async function download(path, name) {
    saveBlob(await api(path, { blob: true }), name);
  }
  function saveBlob(blob, name) {
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function logout() {
    if (S.token) api("/logout", { method: "POST" }).catch(() => {});
    S.token = null; S.me = null; S.ents = null;
    session.removeItem("fe.token"); session.removeItem("fe.me");
    if (location.hash !== "#/login") location.hash = "#/login"; else render();
  }

  // -- charts (plotly.js, served from the installed wheel) --------------------------------
  if (window.Plotly && window.I18N_PLOTLY) window.Plotly.register(window.I18N_PLOTLY);
  function chart(el, traces, layout) {
    const base = { margin: { l: 60, r: 20, t: 30, b: 50 }, font: { family: "system-ui, sans-serif", size: 12 },
      legend: { orientation: "h", y: -0.2 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff" };
    window.Plotly.newPlot(el, traces, { ...base, ...layout }, { displaylogo: false, responsive: true, locale: S.lang === "zh" ? "zh-CN" : "en" });
  }
  const STATE_COLORS = { RUNNING: "#1f8a4c", IDLE: "#c98a12", SETUP: "#2d7fc1", DOWN: "#c0392b",
    PLANNED_STOP: "#6f7f8f", OFF: "#3d4a57", OFFLINE: "#9aa6b2", UNKNOWN: "#c3cbd3", NO_DATA: "#dfe4e9" };

  // -- shell ----------------------------------------------------------------------------
  const PAGES = ["overview", "equipment", "energy", "evidence", "quality"];
  function shell(page) {
    const main = h("main", { id: "main", "data-page": page });
    const save = () => {
      for (const k of ["from", "to", "bfrom", "bto", "site", "proc"]) prefs.setItem(`fe.${k}`, S[k] || "");
      prefs.setItem("fe.ent", S.ent || "");
    };
    const info = S.info[S.ent] || {};
    const filter = (k, label, options) => [h("label", {}, label),
      h("select", { "data-field": k, onchange: (ev) => { S[k] = ev.target.value; save(); render(); } },
        h("option", { value: "" }, t("all")), options.map((o) => h("option", { value: o.id, selected: o.id === S[k] }, nm(o))))];
    const dateInput = (k) => h("input", { type: "date", value: S[k] || "", "data-field": k, onchange: (ev) => { S[k] = ev.target.value; } });
    const header = h("header", {},
      h("h1", {}, t("app"), h("small", {}, t("app_sub"))),
      h("nav", {}, PAGES.map((p) => h("a", { href: `#/${p}`, class: p === page ? "active" : null, "data-nav": p }, t(p)))),
      h("div", { class: "right" },
        h("span", { "data-testid": "who" }, `${S.me?.name || ""} · ${t(`role_${S.me?.role}`)}`),
        h("button", { "data-testid": "lang", onclick: () => { S.lang = S.lang === "zh" ? "en" : "zh"; prefs.setItem("fe.lang", S.lang); render(); } },
          S.lang === "zh" ? "English" : "中文"),
        h("button", { "data-testid": "logout", onclick: logout }, t("logout"))));
    const bar = h("div", { class: "bar" },
      h("label", {}, t("enterprise")),
      h("select", { "data-field": "enterprise", onchange: (ev) => { S.ent = ev.target.value; save(); render(); } },
        (S.ents || []).map((e) => h("option", { value: e.id, selected: e.id === S.ent }, `${nm(e)} (${e.id})`))),
      h("label", {}, t("period")), dateInput("from"), "–", dateInput("to"),
      h("label", {}, t("baseline")), dateInput("bfrom"), "–", dateInput("bto"),
      h("button", { class: "primary", "data-testid": "apply", onclick: () => { save(); render(); } }, t("apply")),
      filter("site", t("site"), info.sites || []), filter("proc", t("col_process"), info.processes || []));
    document.body.replaceChildren(header, bar, main);
    return main;
  }

  // -- login ----------------------------------------------------------------------------
  function renderLogin() {
    const msg = h("div", { role: "alert" });
    const name = h("input", { name: "name", autocomplete: "username", required: true });
    const pw = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
    const form = h("form", { class: "login", onsubmit: async (ev) => {
      ev.preventDefault();
      msg.replaceChildren();
      try {
        const r = await api("/login", { method: "POST", body: { name: name.value, password: pw.value } });
        S.token = r.token; S.me = { name: r.name, role: r.role, enterprises: r.enterprises };
        session.setItem("fe.token", r.token); session.setItem("fe.me", JSON.stringify(S.me));
        location.hash = "#/overview";
      } catch (e) {
        msg.replaceChildren(h("div", { class: "error" }, e.status === 401 ? t("wrong_login") : e.message));
      }
    } },
      h("h1", {}, t("app")), h("p", { class: "muted" }, t("app_sub")),
      h("label", {}, t("user")), name, h("label", {}, t("password")), pw,
      h("button", { class: "primary", type: "submit" }, t("login")), msg,
      h("p", { class: "muted" }, h("button", { type: "button", class: "link", "data-testid": "lang",
        onclick: () => { S.lang = S.lang === "zh" ? "en" : "zh"; prefs.setItem("fe.lang", S.lang); render(); } },
      S.lang === "zh" ? "English" : "中文")));
    document.body.replaceChildren(form);
    name.focus();
  }

  // -- overview -------------------------------------------------------------------------
  const MACHINE_KPIS = new Set(["nc_rate_declared", "nc_rate_measured", "networking_rate", "availability",
    "effectiveness", "quality_ratio", "oee", "utilisation", "mtbf", "mttr"]);
  const CARDS = ["nc_rate_declared", "nc_rate_measured", "networking_rate", "oee", "availability",
    "effectiveness", "quality_ratio", "energy_tce", "energy_per_unit", "energy_per_value_added",
    "water_per_unit", "water_per_value_added", "carbon_tco2", "carbon_per_value_added"];

  // A KPI against a programme target (the API's `targets.results`, evidence/targets.py):
  // met / not met with how far, a region's target for reference, or why not comparable;
  // the programme named, its source in the tooltip and in the card's evidence.
  const SIGN = { ">=": "≥", ">": ">", "<=": "≤", "<": "<" };
  const tgtProgramme = (r) => (S.lang === "en" ? r.target.programme_en || r.target.programme : r.target.programme);
  const tgtSource = (r) => [r.target.source, S.lang === "en" ? r.target.note_en || r.target.note : r.target.note].filter(Boolean).join(" — ");
  function tgtResult(r) {
    const tg = r.target;
    const goal = `${SIGN[tg.comparison]} ${num(tg.threshold)} ${tg.unit}${tg.by ? ` (${t("tgt_by")} ${tg.by})` : ""}`;
    let far = "";
    if (r.reason === "unit_mismatch") far = t("tgt_unit_mismatch").replace("{t}", tg.unit).replace("{k}", r.unit || "—");
    else if (r.reason) far = t(`tgt_${r.reason}`);
    else if (r.difference !== null) {
      const unit = r.difference_unit === "pp" ? t("tgt_pp") : r.difference_unit;
      far = `${r.difference > 0 ? "+" : ""}${num(r.difference, r.difference_unit === "pp" ? 1 : undefined)} ${unit}`;
    }
    return `${t(`tgt_${r.status}`)} ${goal}${far ? ` · ${far}` : ""}`;
  }
  function targetLine(r) {
    const mark = { met: "✓", not_met: "✗", reference: "ⓘ", not_comparable: "–" }[r.status];
    return h("div", { class: `target ${r.status}`, "data-testid": "target", "data-status": r.status, "data-kpi-target": r.kpi, title: `${t("source")}: ${tgtSource(r)}` },
      h("span", { class: "mark" }, mark), " ", tgtResult(r), h("span", { class: "prog" }, ` · ${tgtProgramme(r)}`));
  }

  // the machines (or meters) behind a KPI: those it counts, and for the rates over a
  // population (key-process or production machines) the rest of it, not counted
  const POPULATION = { nc_rate_declared: "key_process", nc_rate_measured: "key_process" };
  function behind(k, doc) {
    const ids = new Set(k.inputs || []);
    const of = POPULATION[k.id] || (MACHINE_KPIS.has(k.id) ? "production" : null);
    const eqs = doc.equipment.filter((e) => ids.has(e.id) || (of && e[of]));
    const meters = doc.meters.filter((m) => ids.has(m.id));
    return h("div", { class: "panel", id: "kpi-machines", "data-kpi": k.id },
      h("h2", {}, `${nm(k)} · ${t("behind")}`),
      eqs.length || !meters.length ? table([
        { label: t("col_equipment"), get: (e) => h("a", { href: `#/equipment/${encodeURIComponent(e.id)}`, "data-machine": e.id, "data-counted": String(ids.has(e.id)) }, `${nm(e)} (${e.id})`) },
        { label: t("col_process"), get: (e) => (S.lang === "en" ? e.process_name_en || e.process_name : e.process_name) || e.process },
        { label: t("col_coverage"), num: true, get: (e) => pct(e.coverage) },
        { label: t("counted"), get: (e) => h("span", { class: ids.has(e.id) ? "ok" : "bad" }, ids.has(e.id) ? t("yes") : t("no")) },
      ], eqs, { id: "kpi-machine-list" }) : null,
      meters.length ? table([
        { label: t("meters"), get: (m) => h("span", { "data-meter": m.id }, `${nm(m)} (${m.id})`) },
        { label: "", get: (m) => carrierName(m.carrier) },
        { label: t("quantity"), num: true, get: (m) => `${num(m.quantity)} ${m.unit}` },
        { label: t("col_coverage"), num: true, get: (m) => pct(m.coverage) },
      ], meters, { id: "kpi-meter-list" }) : null);
  }

  function kpiCard(k, change, threshold, targets, onMachines) {
    const details = h("div", { class: "details", hidden: true },
      h("div", {}, h("b", {}, `${t("formula")}: `), tx(k, "formula")),
      h("div", {}, h("b", {}, `${t("numerator")}: `), num(k.numerator), " · ", h("b", {}, `${t("denominator")}: `), num(k.denominator)),
      k.note ? h("div", {}, h("b", {}, `${t("note")}: `), tx(k, "note")) : null,
      h("div", {}, h("b", {}, `${t("inputs")}: `), (k.inputs || []).slice(0, 12).join(", "), (k.inputs || []).length > 12 ? ` … (+${k.inputs.length - 12})` : ""),
      targets.map((r) => h("div", { "data-testid": "target-source" }, h("b", {}, `${t("tgt_source")} (${tgtProgramme(r)}): `), tgtSource(r))),
      h("div", {}, h("a", { href: "#/evidence" }, `→ ${t("evidence")}`)));
    const low = k.coverage !== null && k.coverage !== undefined && k.coverage < threshold;
    return h("div", { class: `card${low ? " low" : ""}`, "data-kpi": k.id, "data-value": k.value === null ? "" : String(k.value) },
      h("div", { class: "name" }, nm(k)),
      h("div", { class: "value" }, k.value === null ? t("no_value") : num(k.value), k.value === null ? null : h("small", {}, k.unit)),
      h("div", { class: "meta" },
        h("span", { "data-testid": "coverage" }, `${t("coverage")} ${pct(k.coverage)}`),
        change && change.value !== null
          ? h("span", { class: `change ${change.value < 0 ? "down" : "up"}`, "data-testid": "change" },
            `${t("vs_baseline")} ${change.value > 0 ? "+" : ""}${num(change.value, 1)} %`) : null),
      targets.length ? h("div", { class: "targets" }, targets.map(targetLine)) : null,
      h("div", { class: "row" },
        h("button", { class: "link", "data-testid": "show-evidence", onclick: () => { details.hidden = !details.hidden; } }, t("show_evidence")),
        (k.inputs || []).length || MACHINE_KPIS.has(k.id) ? h("button", { class: "link", "data-testid": "show-machines", onclick: () => onMachines(k) }, `${t("behind")} (${(k.inputs || []).length})`) : null),
      details);
  }

  async function overview(main) {
    main.append(h("p", { class: "muted" }, t("loading")));
    const doc = await kpis();
    const byId = Object.fromEntries(doc.kpis.map((k) => [k.id, k]));
    const threshold = doc.parameters.coverage_threshold;
    // a card shows its KPI's targets and those of its change vs the baseline
    const results = doc.targets?.results || [];
    const targetsOf = (id) => results.filter((r) => r.kpi === id || r.kpi === `${id}_change`);
    const machines = h("div", {});
    const onMachines = (k) => { machines.replaceChildren(behind(k, doc)); machines.scrollIntoView({ block: "nearest" }); };
    const cards = CARDS.filter((id) => byId[id]).map((id) => kpiCard(byId[id], byId[`${id}_change`], threshold, targetsOf(id), onMachines));
    const unscoped = doc.scope?.unscoped || [];
    const procChart = h("div", { class: "chart", id: "chart-process" });
    const keyEq = doc.equipment.filter((e) => e.key_process);
    main.replaceChildren(
      h("h2", {}, `${t("kpi_cards")} · ${doc.period.from} – ${doc.period.to}`,
        doc.period.partial ? h("span", { class: "muted" }, ` (${t("partial")})`) : null),
      ...(unscoped.length ? [h("p", { class: "muted", "data-testid": "unscoped" }, t("unscoped_process"))] : []),
      h("div", { class: "cards", id: "kpi-cards" }, cards),
      h("p", { class: "legend", "data-testid": "legend-coverage" }, h("span", { class: "swatch warn" }), t("legend_low").replace("{p}", pct(threshold))),
      machines,
      h("div", { class: "grid2" },
        h("div", { class: "panel" }, h("h2", {}, t("by_process")), procChart),
        h("div", { class: "panel" }, h("h2", {}, t("nc_equipment")),
          table([
            { label: t("col_equipment"), get: (e) => nm(e) },
            { label: t("col_process"), get: (e) => (S.lang === "en" ? e.process_name_en || e.process_name : e.process_name) || e.process },
            { label: t("col_declared_nc"), get: (e) => (e.nc ? t("yes") : t("no")) },
            { label: t("col_measured_nc"), get: (e) => h("span", { class: e.nc_measured ? "ok" : "bad" }, e.nc_measured ? t("yes") : t("no")) },
            { label: t("col_coverage"), num: true, get: (e) => pct(e.coverage) },
          ], keyEq, { id: "nc-equipment" }))));
    const procs = Object.entries(doc.groups.process);
    const label = (p) => (S.lang === "en" ? p.name_en || p.name : p.name) || "—";
    chart(procChart, ["availability", "effectiveness", "quality_ratio", "oee"].map((id) => ({
      type: "bar", name: nm(byId[id]), x: procs.map(([, p]) => label(p)), y: procs.map(([, p]) => p[id]),
      hovertemplate: "%{x}: %{y:.1f} %<extra></extra>",
    })), { barmode: "group", yaxis: { title: { text: "%" }, range: [0, 105] } });
  }

  // -- equipment ------------------------------------------------------------------------
  async function equipmentBoard(main) {
    const board = h("div", { class: "board", id: "board" });
    const stamp = h("span", { class: "muted" });
    main.append(h("h2", {}, t("live_board"), " ", h("span", { class: "muted" }, t("refresh_note"))), board,
      h("p", { class: "legend", "data-testid": "legend-star" }, t("legend_star")), stamp);
    async function refresh() {
      const rows = (await api(`${E()}/equipment`)).filter(inScope);
      board.replaceChildren(...rows.map((e) => {
        const st = !e.device ? "NOT_NETWORKED" : e.gateway_online === false ? "OFFLINE" : e.state || "none";
        return h("button", { class: `tile st-${st}`, "data-equipment": e.id, "data-state": st, onclick: () => { location.hash = `#/equipment/${encodeURIComponent(e.id)}`; } },
          h("div", { class: "n" }, nm(e)),
          h("div", { class: "s" }, st === "none" ? t("no_value") : t(`state_${st}`)),
          h("div", { class: "m" }, e.state_since ? `${t("col_since")} ${local(e.state_since).slice(5, 16)}` : "",
            e.nc ? " · NC" : "", e.key_process ? " · ★" : ""));
      }));
      stamp.textContent = `${local(new Date().toISOString())}`;
    }
    await refresh();
    S.timer = setInterval(() => refresh().catch(() => {}), 10000);
  }

  // declared attributes: corrected by the enterprise (PATCH, audited), read by the others
  function attributes(eq, audit) {
    const canWrite = S.me?.role !== "verifier";
    const procs = S.info[S.ent]?.processes || [];
    const msg = h("div", {});
    const f = {
      nc: h("input", { type: "checkbox", checked: eq.nc, disabled: !canWrite, "data-attr": "nc" }),
      production: h("input", { type: "checkbox", checked: eq.production, disabled: !canWrite, "data-attr": "production" }),
      process: h("select", { disabled: !canWrite, "data-attr": "process" },
        procs.map((p) => h("option", { value: p.id, selected: p.id === eq.process }, `${nm(p)} (${p.id})`))),
      ideal_cycle_time_s: h("input", { type: "number", min: "0.001", step: "any", value: eq.ideal_cycle_time_s ?? "", disabled: !canWrite, "data-attr": "ideal_cycle_time_s" }),
    };
    const note = h("input", { placeholder: t("edit_reason"), size: 40, "data-attr": "note" });
    const save = h("button", { class: "primary", "data-testid": "save-attributes", onclick: async () => {
      const patch = {};
      if (f.nc.checked !== eq.nc) patch.nc = f.nc.checked;
      if (f.production.checked !== eq.production) patch.production = f.production.checked;
      if (f.process.value !== eq.process) patch.process = f.process.value;
      const cycle = f.ideal_cycle_time_s.value === "" ? null : Number(f.ideal_cycle_time_s.value);
      if (cycle !== null && cycle !== eq.ideal_cycle_time_s) patch.ideal_cycle_time_s = cycle;
      if (!Object.keys(patch).length) { msg.replaceChildren(h("p", { class: "muted" }, t("no_change"))); return; }
      try {
        await api(`${E()}/equipment/${encodeURIComponent(eq.id)}`, { method: "PATCH", body: { ...patch, note: note.value } });
        for (const k of Object.keys(kpisCache)) delete kpisCache[k];
        render();
      } catch (e) { msg.replaceChildren(errorBox(e)); }
    } }, t("save"));
    const row = (label, el) => h("tr", {}, h("th", {}, label), h("td", {}, el));
    return h("div", { class: "panel", id: "attributes" },
      h("h2", {}, t("declared")), h("p", { class: "muted" }, canWrite ? t("edit_note") : t("read_only")),
      h("table", {}, h("tbody", {},
        row(t("col_declared_nc"), f.nc), row(t("production_eq"), f.production), row(t("col_process"), f.process),
        row(t("ideal_cycle"), f.ideal_cycle_time_s), row(t("interface"), eq.interface || "—"),
        row(t("vendor_model"), `${eq.vendor || "—"} / ${eq.model || "—"} (${eq.year || "—"})`),
        row(t("col_gateway"), eq.gateway ? `${eq.gateway} (${eq.gateway_online ? t("online") : t("offline")})` : t("no_gateway")))),
      canWrite ? h("div", { class: "row", style: "margin-top:8px" }, note, save) : null, msg,
      h("h2", {}, t("audit")),
      table([
        { label: t("time"), get: (a) => local(a.at).slice(0, 16) }, { label: t("user"), get: (a) => a.account },
        { label: t("field"), get: (a) => word("attr", a.field) }, { label: t("change"), get: (a) => `${JSON.stringify(a.old)} → ${JSON.stringify(a.new)}` },
        { label: t("note"), get: (a) => a.note },
      ], audit, { id: "audit" }));
  }

  async function machine(main, id) {
    // the last day (week) of the chosen period, or up to now while it runs
    const span = { day: 1, week: 7 }[S.span || "day"];
    const periodEnd = Math.min(Date.now(), siteMidnight(addDays(S.to, 1)).getTime());
    const end = new Date(periodEnd - (S.shift || 0) * span * 86400000);
    const start = new Date(end.getTime() - span * 86400000);
    const range = q({ start: start.toISOString(), end: end.toISOString() });
    const [eqs, tl, counters, audit] = await Promise.all([
      api(`${E()}/equipment`),
      api(`${E()}/equipment/${encodeURIComponent(id)}/timeline?${range}`),
      api(`${E()}/equipment/${encodeURIComponent(id)}/counters?${range}&bucket=hour`),
      api(`${E()}/equipment/${encodeURIComponent(id)}/audit`),
    ]);
    const eq = eqs.find((e) => e.id === id);
    if (!eq) throw new Error(id);
    const tabs = h("div", { class: "row tabs" },
      h("button", { onclick: () => { location.hash = "#/equipment"; } }, `← ${t("back")}`),
      ["day", "week"].map((s) => h("button", { class: (S.span || "day") === s ? "on" : null, "data-span": s, onclick: () => { S.span = s; S.shift = 0; render(); } }, t(s))),
      h("button", { onclick: () => { S.shift = (S.shift || 0) + 1; render(); } }, "◀"),
      h("button", { disabled: !S.shift, onclick: () => { S.shift = Math.max(0, (S.shift || 0) - 1); render(); } }, "▶"),
      h("span", { class: "muted" }, `${local(start.toISOString()).slice(0, 16)} – ${local(end.toISOString()).slice(0, 16)} (${zone()})`));
    const gantt = h("div", { class: "chart", id: "chart-timeline", style: "height:220px" });
    const parts = h("div", { class: "chart", id: "chart-parts" });
    const power = h("div", { class: "chart", id: "chart-power" });
    // a machine with no device of its own has no states or parts to chart: say what it is
    const kind = eq.device ? "networked" : eq.interface === "meter_only" ? "meter_only" : "not_networked";
    const pc = counters.counters.find((c) => c.role === "part_count_total") || counters.counters.find((c) => c.role === "part_count_good");
    main.replaceChildren(
      h("h2", {}, `${nm(eq)} (${eq.id})`), tabs,
      kind === "networked" ? h("div", { class: "panel" }, h("h2", {}, t("timeline")), gantt)
        : h("div", { class: "panel kind", "data-kind": kind }, h("b", {}, t(`kind_${kind}`)), " · ", t(`kind_${kind}_note`)),
      h("div", { class: "grid2" }, kind === "networked" ? h("div", { class: "panel" }, h("h2", {}, t("parts")), pc ? parts : h("p", { class: "muted", "data-testid": "no-parts" }, t("no_parts"))) : null,
        h("div", { class: "panel" }, h("h2", {}, t("power")), power)),
      attributes(eq, audit));
    // Gantt: one bar per state interval on a date axis (base = start, length in ms)
    const byState = {};
    for (const iv of tl.intervals) (byState[iv.state] ||= []).push(iv);
    chart(gantt, Object.entries(byState).map(([state, ivs]) => ({
      type: "bar", orientation: "h", name: t(`state_${state}`), marker: { color: STATE_COLORS[state] || "#888" },
      y: ivs.map(() => nm(eq)), base: ivs.map((iv) => local(iv.start)),
      x: ivs.map((iv) => new Date(iv.end) - new Date(iv.start)),
      customdata: ivs.map((iv) => [local(iv.start).slice(5, 16), local(iv.end).slice(5, 16), seconds((new Date(iv.end) - new Date(iv.start)) / 1000)]),
      hovertemplate: `${t(`state_${state}`)}: %{customdata[0]} – %{customdata[1]} (%{customdata[2]})<extra></extra>`,
    })), { barmode: "overlay", xaxis: { type: "date", range: [local(start.toISOString()), local(end.toISOString())] }, yaxis: { visible: false }, margin: { l: 20, r: 20, t: 10, b: 40 } });
    // the charts span the window the timeline shows; with nothing counted or metered in it,
    // a line saying so (an empty chart would put its axis at plotly's default, January 2000)
    const windowAxis = { type: "date", range: [local(start.toISOString()), local(end.toISOString())] };
    if (kind === "networked" && pc && !pc.points.length) parts.replaceChildren(h("p", { class: "muted", "data-testid": "no-parts-window" }, t("no_parts_window")));
    else if (kind === "networked" && pc) chart(parts, [{ type: "bar", name: pc.tag, x: pc.points.map((p) => local(p.t)), y: pc.points.map((p) => p.quantity), marker: { color: "#2d7fc1" } }],
      { xaxis: windowAxis, yaxis: { title: { text: S.lang === "zh" ? "件" : "parts" } }, showlegend: false });
    const pw = counters.power[0];
    if (pw) {
      const s = await api(`${E()}/series?${q({ device: pw.device, tag: pw.tag, start: start.toISOString(), end: end.toISOString(), points: 400 })}`);
      const label = pw.meter ? `${S.lang === "en" ? pw.meter_name_en || pw.meter_name : pw.meter_name} (${pw.meter}: ${pw.covers.join(", ")})` : pw.tag;
      // a line meter's power is the sum of every machine on it, not this machine's
      const shared = Boolean(pw.meter) && pw.covers.length > 1;
      const source = !pw.meter ? "power_own_tag" : shared ? "power_shared" : "power_own_meter";
      power.before(h("p", { class: shared ? "warn" : "muted", "data-testid": "power-source", "data-shared": String(shared) },
        t(source).replace("{n}", pw.covers.length), ": ", label));
      if (!s.points.length) power.replaceChildren(h("p", { class: "muted", "data-testid": "no-power-window" }, t("no_power_window")));
      else chart(power, [{ type: "scatter", mode: "lines", name: label, x: s.points.map((p) => local(p.t)), y: s.points.map((p) => p.avg), line: { color: "#c0392b" } }],
        { xaxis: windowAxis, yaxis: { title: { text: s.unit || "kW" } }, showlegend: false });
    } else {
      power.replaceChildren(h("p", { class: "muted", "data-testid": "no-power" }, t("no_power")));
    }
    // (a machine with no device of its own has no stops: no timeline to attach them to)
    if (kind === "networked") await window.FE.machineDowntime?.(eq, start, end, gantt);
  }

  // -- energy ---------------------------------------------------------------------------
  const CARRIER_NAMES = { electricity: ["电力", "Electricity"], water: ["水", "Water"], gas: ["天然气", "Natural gas"],
    steam: ["蒸汽", "Steam"], air: ["压缩空气", "Compressed air"], heat: ["热力", "Heat"], diesel: ["柴油", "Diesel"] };
  const carrierName = (c) => (CARRIER_NAMES[c] || [c, c])[S.lang === "en" ? 1 : 0];
  const INTENSITIES = ["energy_per_unit", "energy_per_value_added", "water_per_unit", "water_per_value_added", "carbon_per_value_added"];

  // output and value added per period: the intensities' denominators, entered by the
  // enterprise (its MES and books), shown to everyone who may read
  async function productionPanel() {
    const rows = (await api(`${E()}/production`)).filter((p) => p.period_from <= S.to && p.period_to >= S.from);
    const canWrite = S.me?.role !== "verifier";
    const msg = h("div", {});
    const f = {
      from: h("input", { type: "date", value: S.from, "data-prod": "from" }),
      to: h("input", { type: "date", value: S.to, "data-prod": "to" }),
      output: h("input", { type: "number", min: "0", step: "any", size: 8, "data-prod": "output" }),
      output_unit: h("input", { value: S.lang === "zh" ? "件" : "pcs", size: 4, "data-prod": "output_unit" }),
      value_added_10k_cny: h("input", { type: "number", min: "0", step: "any", size: 8, "data-prod": "value_added_10k_cny" }),
      note: h("input", { size: 24, placeholder: t("note"), "data-prod": "note" }),
    };
    const add = h("button", { class: "primary", "data-testid": "add-production", onclick: async () => {
      const body = { from: f.from.value, to: f.to.value, output_unit: f.output_unit.value, note: f.note.value };
      if (f.output.value !== "") body.output = Number(f.output.value);
      if (f.value_added_10k_cny.value !== "") body.value_added_10k_cny = Number(f.value_added_10k_cny.value);
      try {
        await api(`${E()}/production`, { method: "POST", body });
        for (const k of Object.keys(kpisCache)) delete kpisCache[k];
        render();
      } catch (e) { msg.replaceChildren(errorBox(e)); }
    } }, t("add"));
    return h("div", { class: "panel", id: "production" },
      h("h2", {}, t("production")), h("p", { class: "muted" }, t("production_note")),
      table([
        { label: t("period"), get: (p) => `${p.period_from} – ${p.period_to}` },
        { label: t("output"), num: true, get: (p) => (p.output === null ? "—" : `${num(p.output)} ${p.output_unit}`) },
        { label: t("value_added"), num: true, get: (p) => num(p.value_added_10k_cny) },
        { label: t("note"), get: (p) => p.note }, { label: t("created_by"), get: (p) => p.entered_by },
      ], rows, { id: "production-list", "data-count": rows.length }),
      canWrite ? h("div", { class: "row", style: "margin-top:8px" }, f.from, "–", f.to, t("output"), f.output, f.output_unit,
        t("value_added"), f.value_added_10k_cny, f.note, add) : null, msg);
  }

  // the coefficient and emission factor tables the figures are converted with, and
  // where each number comes from
  function factorsPanel(f) {
    const tables = [...f.energy.map((t) => [t, "coefficient"]), ...f.emission.map((t) => [t, "factor"])];
    const title = (tb) => (S.lang === "zh" ? f.titles_zh?.[tb.version] || tb.title : tb.title);
    return h("details", { class: "panel", id: "factors" },
      h("summary", {}, `${t("factors")} (`, tables.map(([tb], i) => [i ? ", " : "", h("code", {}, tb.version)]), ")"),
      tables.map(([tb, key]) => h("div", {},
        h("h2", {}, `${title(tb)} · `, h("code", {}, tb.version)),
        table([
          { label: "", get: (r) => carrierName(r.carrier) }, { label: t("unit"), get: (r) => r.unit },
          { label: t("region_year"), get: (r) => (r.region ? `${regionName(r.region, f.regions)} ${r.year ?? ""}` : "—") },
          { label: key === "factor" ? t("factor") : t("coefficient"), num: true, get: (r) => `${r[key]} ${r[`${key}_unit`]}` },
          { label: t("source"), get: (r) => [r.basis, r.source].filter(Boolean).join(" · ") },
        ], tb.rows))));
  }

  // a grid region's name (reference/factors.py, by the API's /factors), its id where unnamed
  const regionName = (id, regions) => { const r = regions?.[id]; return r ? nm(r) : id; };

  // A trend's targets as levels to draw: a target on the KPI itself at its threshold (same
  // unit), one on its change vs the baseline (in %) at the baseline's value moved by it
  function trendTargets(id, meta, base, doc) {
    const out = [];
    for (const r of (doc.targets?.results || [])) {
      const tg = r.target;
      let y = null;
      if (r.kpi === id && tg.unit.trim() === (meta.unit || "").trim()) y = tg.threshold;
      else if (r.kpi === `${id}_change` && tg.unit.trim() === "%" && base && base.value !== null) y = base.value * (1 + tg.threshold / 100);
      if (y === null) continue;
      const goal = r.kpi === id ? `${SIGN[tg.comparison]} ${num(tg.threshold)}` : `${t("baseline")} ${SIGN[tg.comparison]} ${tg.threshold > 0 ? "+" : ""}${num(tg.threshold)} %`;
      out.push({ y, name: `${t("target")} ${goal} · ${tgtProgramme(r)}${r.status === "reference" ? ` (${t("tgt_reference")})` : ""}`,
        color: r.status === "reference" ? "#6f7f8f" : "#b7791f" });
    }
    return out;
  }

  async function energy(main) {
    main.append(h("p", { class: "muted" }, t("loading")));
    const [doc, factors] = await Promise.all([kpis(false), api("/factors")]);
    const regions = factors.regions;
    const days = Math.round((new Date(S.to) - new Date(S.from)) / 86400000) + 1;
    const bucket = days <= 3 ? "hour" : "day";
    // a day's intensity swings with its output (an idle Sunday's base load over a few
    // parts): weeks by default from a fortnight on, months from four
    const fits = (s) => ({ day: days, week: days / 7 + 1, month: days / 28 + 1 })[s] <= 62;
    let step = S.step && fits(S.step) ? S.step : days < 14 ? "day" : days <= 120 ? "week" : "month";
    if (!fits(step)) step = "month";
    const [series, trend] = await Promise.all([
      api(`${E()}/energy?${q({ start: doc.period.start, end: doc.period.end, bucket })}`),
      api(`${E()}/trend?${q({ from: S.from, to: S.to, step, site: S.site })}&${INTENSITIES.map((k) => `kpi=${k}`).join("&")}`),
    ]);
    series.meters = series.meters.filter((m) => !S.site || m.site === S.site);
    const carriers = [...new Set(series.meters.map((m) => m.carrier))];
    const panels = carriers.map((c) => h("div", { class: "panel" }, h("h2", {}, carrierName(c)), h("div", { class: "chart", "data-carrier": c })));
    const trendCharts = INTENSITIES.map((id) => h("div", { class: "chart", "data-intensity": id, style: "height:260px" }));
    const base = Object.fromEntries((doc.baseline?.kpis || []).map((k) => [k.id, k]));
    main.replaceChildren(
      h("h2", {}, `${t("consumption")} · ${doc.period.from} – ${doc.period.to}`),
      ...(S.proc ? [h("p", { class: "muted", "data-testid": "scope-note" }, t("energy_per_site"))] : []),
      h("div", { class: "grid2" }, panels),
      h("div", { class: "panel" }, h("h2", {}, t("meters")),
        table([
          { label: t("meters"), get: (m) => `${nm(m)}${m.top_level ? "" : " ↳"}` },
          { label: "", get: (m) => carrierName(m.carrier) },
          { label: t("quantity"), num: true, get: (m) => `${num(m.quantity)} ${m.unit}` },
          { label: t("tce"), num: true, get: (m) => num(m.tce, 3) },
          { label: t("tco2"), num: true, get: (m) => num(m.tco2, 3) },
          { label: t("coverage"), num: true, get: (m) => pct(m.coverage) },
          { label: t("factor"), get: (m) => (m.emission_factor ? `${m.emission_factor.factor} ${m.emission_factor.factor_unit} (${regionName(m.emission_factor.region, regions)} ${m.emission_factor.year})` : "—") },
          { label: `${t("rollovers")} / ${t("resets")}`, num: true, get: (m) => `${m.rollovers} / ${m.resets}` },
        ], doc.meters, { id: "meters" })),
      h("h2", {}, t("intensity"), hasBaseline() ? ` (${t("baseline_period")} ${S.bfrom} – ${S.bto})` : h("span", { class: "muted" }, ` ${t("no_baseline")}`)),
      h("div", { class: "row tabs" }, ["day", "week", "month"].map((s) => h("button", { class: s === step ? "on" : null, "data-step": s, disabled: !fits(s),
        onclick: () => { S.step = s; render(); } }, t(s)))),
      h("div", { class: "grid2" }, trendCharts.map((el) => h("div", { class: "panel" }, el))),
      await productionPanel(),
      factorsPanel(factors));
    for (const [i, c] of carriers.entries()) {
      const meters = series.meters.filter((m) => m.carrier === c && m.top_level);
      chart(panels[i].querySelector(".chart"), meters.map((m) => ({
        type: "bar", name: nm(m), x: m.points.map((p) => local(p.t)), y: m.points.map((p) => p.quantity),
        hovertemplate: `${nm(m)}: %{y:.2f} ${m.unit}<extra></extra>`,
      })), { barmode: "stack", xaxis: { type: "date" }, yaxis: { title: { text: `${meters[0]?.unit || ""} / ${bucket === "hour" ? t("h") : t("day")}` } } });
    }
    for (const [i, id] of INTENSITIES.entries()) {
      const meta = trend.kpis[id] || { name: id, name_en: id, unit: "" };
      const xs = trend.points.map((p) => p.from);
      const traces = [{ type: "scatter", mode: "lines+markers", name: t("this_period"), x: xs, y: trend.points.map((p) => p.kpis[id] ?? null) }];
      if (base[id] && base[id].value !== null) traces.push({ type: "scatter", mode: "lines", name: t("baseline_period"), x: xs, y: xs.map(() => base[id].value), line: { dash: "dash", color: "#6f7f8f" } });
      const lines = trendTargets(id, meta, base[id], doc);
      for (const tl of lines) traces.push({ type: "scatter", mode: "lines", name: tl.name, x: xs, y: xs.map(() => tl.y), line: { dash: "dot", color: tl.color } });
      trendCharts[i].setAttribute("data-targets", lines.length);
      chart(trendCharts[i], traces, { title: { text: nm(meta), font: { size: 13 } }, xaxis: { type: "date", tickformat: "%Y-%m-%d" }, yaxis: { title: { text: meta.unit }, rangemode: "tozero" } });
    }
  }

  // -- evidence -------------------------------------------------------------------------
  // "kpi oee" -> the KPI's name in the report, in the console's language
  function itemName(item, doc) {
    const [kind, id] = item.split(" ");
    const k = kind === "kpi" && doc ? doc.kpis.find((x) => x.id === id) : null;
    return k ? [nm(k), " ", h("code", { class: "muted" }, id)] : item;
  }
  // a reason code of the verdict in the console's language; the server's own words (in
  // English, with the figures) as the tooltip
  function reasonText(r, doc) {
    const key = `reason_${r.code}`;
    const text = window.I18N.zh[key] ? t(key).replace("{n}", r.count ?? "") : r.message;
    return r.code === "late_data" && doc?.period?.partial ? `${text} ${t("reason_partial_hint")}` : text;
  }
  // what the printed report shows on its first page (the API's `paper`: id, digest, QR as
  // an SVG data: URI, shown as an image, never as markup), to compare with a paper copy
  function paperView(p) {
    if (!p) return null;
    return h("div", { class: "paper", id: "paper", "data-report": p.report_id, "data-digest": p.digest },
      p.qr_svg ? h("img", { class: "qr", src: p.qr_svg, alt: t("paper_qr"), title: t("paper_qr"), "data-testid": "paper-qr" })
        : h("div", { class: "qr muted" }, t("paper_no_qr")),
      h("div", {},
        h("div", {}, `${t("report_id")}: `, h("code", { id: "paper-id" }, p.report_id)),
        h("div", {}, `${t("report_digest")}: `, h("code", { id: "paper-digest", class: "short", title: p.digest }, p.short_digest)),
        h("p", { class: "muted" }, t("paper_hint"))));
  }
  // the report's own `anchoring` block (days time-stamped by a TSA, as the server held them
  // when it made the report): a count by state, and the days still waiting for a token
  // a dead letter's reason: in zh what its code means and what to do (i18n.js `dl_<code>`),
  // the server's English words under it as a literal; in en those words, the meaning as
  // the tooltip
  const refusalKey = (code) => (window.I18N.zh[`dl_${code}`] ? `dl_${code}` : "dl_other");
  const refusalCell = (d) => (S.lang === "en"
    ? h("span", { "data-dl-code": d.code || "other", title: t(refusalKey(d.code)) }, d.reason)
    : h("span", { "data-dl-code": d.code || "other" }, t(refusalKey(d.code)),
      h("div", { class: "muted" }, `${t("dl_original")}: `, h("code", {}, d.reason))));
  // a TSA's failure: in zh its kind's meaning (i18n.js `anchor_err_<kind>`; an error
  // stored before the kinds is `other`), the URL and the server's words as a literal
  const anchorErrKey = (kind) => (window.I18N.zh[`anchor_err_${kind}`] ? `anchor_err_${kind}` : "anchor_err_other");
  const anchorErrors = (errs) => (S.lang === "en" || !errs.length ? null
    : h("code", { class: "muted", "data-anchor-errors": errs.map((e) => e.kind || "other").join(" "), title: errs.map((e) => `${e.url}: ${e.error}`).join("\n") }, " ⓘ"));
  function anchoringView(doc) {
    const a = doc?.anchoring;
    if (!a || !Array.isArray(a.days)) return null;
    const states = ["anchored", "pending", "not_anchored", "not_due"];
    const open = a.days.filter((d) => d.state === "pending" || (d.state === "not_anchored" && d.batches));
    return h("div", { id: "anchoring", "data-open": open.length },
      `${t("anchoring")}: `,
      states.map((s) => h("span", { class: s === "anchored" ? "ok" : (s === "not_due" ? "muted" : ""), "data-anchor-count": s, style: "margin-right:10px" },
        `${t(`anchor_${s}`)} ${a.summary?.[s] ?? 0}`)),
      open.length ? h("div", { class: "bad" }, "⚠ ", withCmd(t("anchor_open"), "ingest-server anchor --pending"), ": ",
        open.map((d) => h("span", { "data-anchor-day": d.day, "data-anchor-state": d.state, title: (d.errors || []).map((e) => (S.lang === "en" ? `${e.url}: ${e.error}` : t(anchorErrKey(e.kind)))).join("\n") || null, style: "margin-right:8px" },
          `${d.day} (${t(`anchor_${d.state}`)})`, anchorErrors(d.errors || [])))) : null);
  }
  // the server's signature sentence is English (with the key's dates): in Chinese, what it
  // comes to
  const signatureZh = (v) => (!v.signature_ok ? t("reason_signature_invalid") : v.trusted ? t("sig_trusted") : t("reason_key_untrusted"));
  function verdictView(v, doc) {
    const reasons = v.reasons || [];
    return h("div", { class: "panel", id: "verdict", "data-ok": String(v.ok) },
      paperView(v.paper),
      anchoringView(doc),
      h("div", { class: `verdict ${v.ok ? "ok" : "bad"}` }, v.ok ? t("verified") : t("not_verified")),
      reasons.length ? h("ul", { id: "reasons" }, reasons.map((r) => h("li", { class: "bad", "data-reason": r.code, title: S.lang === "en" ? r.message : null },
        `${t("why")}: ${reasonText(r, doc)}`))) : null,
      h("div", {}, `${t("signature")}: `,
        h("span", { class: v.signature_ok ? "ok" : "bad", id: "signature", title: S.lang === "en" ? v.signature : signatureZh(v) },
          v.signature_ok ? t("sig_valid") : t("sig_invalid"),
          doc?.signature?.key_id ? [` (${t("key")} `, h("code", {}, String(doc.signature.key_id).slice(0, 12)), ")"] : ""),
        ` · ${t("trusted")}: `, h("span", { class: v.trusted ? "ok" : "bad" }, v.trusted ? t("yes") : t("no")),
        ` · ${t("digest")}: `, h("span", { class: v.digest_ok ? "ok" : "bad" }, v.digest_ok ? t("ok") : t("differs"))),
      table([
        { label: t("item"), get: (c) => itemName(c.item, doc) },
        { label: t("claimed"), num: true, get: (c) => (typeof c.claimed === "number" ? num(c.claimed, 6) : String(c.claimed ?? "—")) },
        { label: t("recomputed"), num: true, get: (c) => (typeof c.recomputed === "number" ? num(c.recomputed, 6) : String(c.recomputed ?? "—")) },
        { label: "", get: (c) => h("span", { class: c.ok ? "ok" : "bad" }, c.ok ? "✓" : "✗") },
      ], v.checks, { id: "checks" }));
  }

  async function evidence(main) {
    const canWrite = S.me?.role !== "verifier";
    const out = h("div", { id: "verify-out" });
    const msg = h("div", { id: "issue-msg" });
    const list = h("div", { id: "reports" });
    const verifyBy = async (id, btn) => {
      btn.disabled = true; btn.textContent = t("verifying");
      try {
        const [v, doc] = await Promise.all([api(`/reports/${id}/verify`, { method: "POST" }), api(`/reports/${id}`)]);
        out.replaceChildren(verdictView(v, doc));
      } catch (e) { out.replaceChildren(errorBox(e)); }
      btn.disabled = false; btn.textContent = t("verify");
    };
    async function refresh() {
      const rows = await api(`${E()}/reports`);
      list.replaceChildren(table([
        { label: t("created"), get: (r) => local(r.created_at).slice(0, 16) },
        { label: t("period"), get: (r) => h("span", { title: r.partial ? t("partial_report") : null }, `${r.period_from} – ${r.period_to}${r.partial ? ` (${t("partial_short")})` : ""}`) },
        { label: t("created_by"), get: (r) => r.created_by },
        { label: t("key"), get: (r) => h("code", {}, String(r.key_id).slice(0, 12)) },
        { label: t("download"), csv: false, get: (r) => ["json", "html", "xlsx", "pdf"].map((f) => h("button", { class: "link", style: "margin-right:8px", "data-download": f,
          title: f === "pdf" ? t("pdf_title") : null,
          onclick: () => download(f === "pdf" ? `/reports/${r.id}/pdf` : `/reports/${r.id}?format=${f}`, `report-${S.ent}-${r.period_from}-${r.period_to}.${f}`).catch((e) => msg.replaceChildren(errorBox(e))) }, f.toUpperCase())) },
        { label: t("bundle"), get: bundleCell },
        { label: "", csv: false, get: (r) => { const b = h("button", { class: "primary", "data-verify": r.id }, t("verify")); b.onclick = () => verifyBy(r.id, b); return b; } },
      ], rows, { id: "report-list", "data-count": rows.length }));
    }
    // the evidence bundle kept with a report: a download with its size and the first 16 hex
    // digits of its SHA-256 (the whole hash as the tooltip), or why there is none
    function bundleCell(r) {
      const b = r.bundle || {};
      if (!b.present) {
        // why: in English the server's words; in Chinese its code's (i18n.js
        // `bundle_err_<code>`, the command as a literal), a failed build's own text as one
        const code = b.error_code || "build_failed";
        const why = S.lang !== "zh" ? b.error
          : [withCmd(t(`bundle_err_${code}`), "report --no-bundle"),
            code === "build_failed" && b.error ? h("code", {}, ` ${b.error}`) : null];
        return h("span", { class: "bad", "data-bundle-cell": r.id, "data-bundle-missing": r.id, "data-bundle-error": code, title: S.lang === "zh" ? null : b.error || null },
          t("bundle_unavailable"), b.error ? h("div", { class: "muted" }, why) : null);
      }
      return h("div", { "data-bundle-cell": r.id },
        h("button", { class: "link", "data-bundle": r.id, title: t("bundle_title"),
          onclick: () => download(`/reports/${r.id}/bundle`, `bundle-${r.id}.zip`).catch((e) => msg.replaceChildren(errorBox(e))) },
          `${t("bundle")} · ${bytesText(b.bytes)}`),
        h("div", { class: "muted" }, "SHA-256 ", h("code", { title: b.sha256 }, b.sha256.slice(0, 16))));
    }
    const gen = h("button", { class: "primary", "data-testid": "generate", onclick: async () => {
      gen.disabled = true; gen.textContent = t("generating"); msg.replaceChildren();
      try {
        const r = await api(`${E()}/reports`, { method: "POST", body: { from: S.from, to: S.to, baseline_from: hasBaseline() ? S.bfrom : null, baseline_to: hasBaseline() ? S.bto : null } });
        // (replaceChildren would write a null as the text "null")
        msg.replaceChildren(h("div", {}, h("p", { class: "ok", "data-testid": "issued", "data-report": r.id }, "✓ ", h("code", {}, r.id)),
          r.period?.partial ? h("p", { class: "bad", "data-testid": "issued-partial" }, `⚠ ${t("partial_report")}`) : null));
        await refresh();
      } catch (e) { msg.replaceChildren(errorBox(e)); }
      gen.disabled = false; gen.textContent = t("generate");
    } }, t("generate"));
    const file = h("input", { type: "file", accept: "application/json,.json", "data-testid": "verify-file", onchange: async (ev) => {
      const f = ev.target.files[0];
      if (!f) return;
      try {
        // the file's exact bytes go to the server: it parses and verifies them as they are
        const text = await f.text();
        const v = await api("/reports/verify", { method: "POST", raw: text });
        let doc = null;
        try { doc = JSON.parse(text); } catch { /* the server said what is wrong with it */ }
        out.replaceChildren(verdictView(v, doc));
      } catch (e) { out.replaceChildren(errorBox(e)); }
      ev.target.value = "";  // the same file again verifies again
    } });
    main.append(
      h("h2", {}, t("evidence")),
      h("div", { class: "panel row" }, canWrite ? [gen, h("span", { class: "muted" }, `${t("period")} ${S.from} – ${S.to}${hasBaseline() ? ` · ${t("baseline")} ${S.bfrom} – ${S.bto}` : ""}`),
        periodOpen() ? h("span", { class: "bad", "data-testid": "period-open" }, `⚠ ${t("partial_report")}`) : null]
        : h("span", { class: "muted", "data-testid": "read-only" }, `${t("read_only")}: ${t("verifier_hint")}`)),
      msg, h("h2", {}, t("reports")), ...scopeNote("reports_whole"), list,
      h("p", { class: "muted", "data-testid": "bundle-hint" }, t("bundle_hint_1"), h("code", {}, "ingest-server verify FILE --trust trust.json"), t("bundle_hint_2"), h("code", {}, "trust.json"), t("bundle_hint_3")),
      h("div", { class: "panel row" }, h("label", {}, t("verify_file")), file), out);
    await refresh();
  }

  // -- data quality ---------------------------------------------------------------------
  async function quality(main) {
    main.append(h("p", { class: "muted" }, t("loading")));
    const [doc, gwsAll, dlsAll, eqs] = await Promise.all([kpis(), api(`${E()}/gateways`), api(`${E()}/dead-letters?limit=100`), api(`${E()}/equipment`)]);
    const gws = gwsAll.filter((g) => !S.site || g.site === S.site);
    const dls = dlsAll.filter((d) => !S.site || d.site === S.site);
    const qd = doc.quality;
    const device = Object.fromEntries(eqs.map((e) => [e.id, e.device]));
    const gapsOf = (e) => qd.gaps.filter((g) => device[e.id] && g.device === device[e.id]);
    const covChart = h("div", { class: "chart", id: "chart-coverage" });
    const low = qd.tags.filter((r) => r.coverage !== null && r.coverage < doc.parameters.coverage_threshold).length;
    main.replaceChildren(
      h("h2", {}, t("gateways")),
      table([
        { label: "ID", get: (g) => `${g.site}/${g.id}` },
        { label: t("col_state"), get: (g) => h("span", { class: g.online ? "ok" : "bad" }, g.online ? t("online") : t("offline")) },
        { label: t("status_at"), get: (g) => (g.status_at ? local(g.status_at) : "—") },
        { label: t("boot"), get: (g) => g.boot ?? "—" }, { label: t("agent"), get: (g) => (g.agent ? [g.agent.name, g.agent.version].filter(Boolean).join(" ") : "—") },
      ], gws, { id: "gateways" }),
      h("h2", {}, t("unknown_time")), h("p", { class: "muted" }, t("unknown_note")),
      table([
        { label: t("col_equipment"), get: (e) => `${nm(e)} (${e.id})` },
        { label: t("unknown_h"), num: true, get: (e) => (e.time ? h("span", { "data-unknown-s": e.time.unknown_s }, num(e.time.unknown_s / 3600, 2)) : h("span", { class: "muted" }, t(device[e.id] ? "no_state" : `kind_${e.interface === "meter_only" ? "meter_only" : "not_networked"}`))) },
        { label: t("pbt_h"), num: true, get: (e) => (e.time ? num(e.time.pbt_s / 3600, 2) : "—") },
        { label: t("col_coverage"), num: true, get: (e) => pct(e.coverage) },
        { label: t("gaps"), num: true, get: (e) => { const g = gapsOf(e); return g.length ? `${g.length} · ${seconds(g.reduce((a, x) => a + x.seconds, 0))}` : "—"; } },
      ], doc.equipment, { id: "unknown-time" }),
      h("h2", {}, `${t("gaps")} (${qd.gaps.length})`),
      table([
        { label: t("device"), get: (g) => g.device }, { label: t("kind"), get: (g) => t(`${g.kind}_kind`) },
        { label: t("start"), get: (g) => local(g.start) }, { label: t("end"), get: (g) => local(g.end) },
        { label: t("duration"), num: true, get: (g) => seconds(g.seconds) },
      ], qd.gaps, { id: "gaps" }),
      h("h2", {}, `${t("anomalies")} (${qd.counter_anomalies.length})`),
      table([
        { label: t("device"), get: (a) => a.device }, { label: t("tag"), get: (a) => a.tag }, { label: t("time"), get: (a) => local(a.ts) },
        { label: t("flag"), get: (a) => word("flag", a.flag) }, { label: t("prev_value"), num: true, get: (a) => num(a.prev_value) },
        { label: t("value"), num: true, get: (a) => num(a.value) }, { label: t("delta"), num: true, get: (a) => num(a.delta) },
      ], qd.counter_anomalies, { id: "anomalies" }),
      h("h2", {}, `${t("dead_letters")} (${dls.length})`),
      table([
        { label: t("time"), get: (d) => local(d.received_at) }, { label: t("col_gateway"), get: (d) => `${d.site}/${d.gateway}` },
        { label: t("topic"), get: (d) => h("code", {}, d.topic) }, { label: t("reason"), get: refusalCell }, { label: t("size"), num: true, get: (d) => d.payload_bytes },
      ], dls, { id: "dead-letters" }),
      h("h2", {}, t("tag_coverage")), h("div", { class: "panel" }, covChart),
      h("details", { open: low > 0 }, h("summary", {}, `${qd.tags.length} ${t("tag")} · ${low} < ${pct(doc.parameters.coverage_threshold)}`),
      table([
        { label: t("device"), get: (r) => r.device }, { label: t("tag"), get: (r) => r.tag }, { label: t("role"), get: (r) => word("tagrole", r.role) },
        { label: t("received"), num: true, get: (r) => num(r.received, 0) }, { label: t("expected"), num: true, get: (r) => num(r.expected, 0) },
        { label: t("coverage"), num: true, get: (r) => h("span", { class: r.coverage !== null && r.coverage < doc.parameters.coverage_threshold ? "bad" : null }, pct(r.coverage)) },
      ], qd.tags, { id: "tags" })));
    const devices = {};
    for (const r of qd.tags) if (r.coverage !== null) (devices[r.device] ||= []).push(r.coverage);
    const names = Object.keys(devices).sort();
    covChart.after(h("p", { class: "legend", "data-testid": "legend-coverage" }, h("span", { class: "swatch bad" }), t("legend_cov_bar"), " ",
      h("span", { class: "swatch ok" }), t("legend_cov_ok"), " ", h("span", { class: "swatch warn line" }), t("legend_cov_line").replace("{p}", pct(doc.parameters.coverage_threshold))));
    chart(covChart, [{ type: "bar", x: names, y: names.map((d) => (100 * Math.min(...devices[d]))), name: t("coverage"),
      marker: { color: names.map((d) => (Math.min(...devices[d]) < doc.parameters.coverage_threshold ? "#c0392b" : "#1f8a4c")) },
      hovertemplate: "%{x}: %{y:.1f} %<extra></extra>" }],
    { yaxis: { title: { text: `${t("coverage")} (${t("lowest")}, %)` }, range: [0, 105] }, shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 100 * doc.parameters.coverage_threshold, y1: 100 * doc.parameters.coverage_threshold, line: { dash: "dot", color: "#b7791f" } }] });
  }

  // -- router ---------------------------------------------------------------------------
  const VIEWS = { overview, equipment: null, energy, evidence, quality };
  // what downtime.js (loaded after this file) builds on: it adds its page and its part of a machine's
  window.FE = { S, PAGES, VIEWS, render, h, table, errorBox, api, q, E, t, nm, word, num, pct, local, seconds, siteMidnight, addDays, chart, STATE_COLORS };
  async function render() {
    const id = ++S.renderId;
    clearInterval(S.timer);
    document.documentElement.lang = S.lang === "zh" ? "zh-CN" : "en";
    document.title = t("app");
    if (!S.token) { renderLogin(); return; }
    const [page, arg] = location.hash.replace(/^#\/?/, "").split("/");
    const name = VIEWS[page] !== undefined ? page : "overview";
    try {
      if (!S.ents) S.ents = await api("/enterprises");
      if (!S.ents.some((e) => e.id === S.ent)) S.ent = S.ents[0]?.id;
      if (S.ent && !S.info[S.ent]) S.info[S.ent] = await api(E());
      const info = S.info[S.ent] || {};
      if (S.site && !(info.sites || []).some((x) => x.id === S.site)) S.site = "";
      if (S.proc && !(info.processes || []).some((x) => x.id === S.proc)) S.proc = "";
      defaultPeriod();
    } catch (e) { if (S.token) document.body.replaceChildren(errorBox(e)); return; }
    if (id !== S.renderId) return;
    const main = shell(name);
    try {
      if (!S.ent) throw new Error(t("none"));
      if (name === "equipment") await (arg ? machine(main, decodeURIComponent(arg)) : equipmentBoard(main));
      else await VIEWS[name](main);
      main.setAttribute("data-ready", "1");
    } catch (e) {
      if (id === S.renderId) main.replaceChildren(errorBox(e));
    }
  }
  window.addEventListener("hashchange", render);
  window.addEventListener("DOMContentLoaded", render);
})();
