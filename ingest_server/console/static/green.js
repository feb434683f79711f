"use strict";
// The green-factory page (绿色工厂), loaded after app.js and built on what it exposes
// (window.FE): for the bar's period, the indicator sheet in the standard's order (each
// figure beside the baseline and leading values the enterprise entered, and where it
// stands), the GHG summary by category with its total, and who entered the values when.
// The enterprise role (and admin) enters the period's values in a form per indicator (the
// sheet's rows, grouped as the sheet is), a PV section and a list of process emissions,
// prefilled with what is in force; saving sends the body of PUT the file of
// `ingest-server green set` is, so a factory's energy manager writes no JSON. The file
// itself may still be pasted, as JSON or YAML (the server reads YAML), in the collapsed
// "advanced" box. A number that is not one is named before anything is sent; a refusal
// shows the API's detail and marks the field it names. A verifier reads.
// API: api/routes/green.py; the sheet and the summary: docs/green-ghg.md.
(() => {
  const FE = window.FE;
  const { S, h, table, errorBox, api, q, E, t, num } = FE;

  const canEnter = () => S.me?.role !== "verifier";
  const when = (iso) => FE.local(iso).slice(0, 16);
  const fig = (v) => (v === null || v === undefined ? "—" : num(v));
  const en = () => document.documentElement.lang === "en";
  const pick = (zh, eng) => (en() ? eng || zh : zh);
  // the server's notes are "中文 / English", parts joined by "; ": the page's language's half
  const half = (text) => (text || "").split("; ").map((p) => {
    const i = p.indexOf(" / ");
    return i < 0 ? p : en() ? p.slice(i + 3) : p.slice(0, i);
  }).join("; ");
  // a word of the console's catalogue with {name}s filled in
  const say = (key, vars) => Object.entries(vars || {}).reduce((s, [k, v]) => s.replaceAll(`{${k}}`, v), t(key));
  const code = (text) => h("code", {}, text);
  // a command in a server's note is a literal, shown as code: `quoted` in English, the
  // words after 命令行 in Chinese ("请录入产量 (控制台能源页, 或命令行 production add)")
  function noted(text) {
    const out = [];
    let last = 0;
    for (const m of text.matchAll(/`([^`]+)`|(命令行\s*)([A-Za-z][\w-]*(?: [A-Za-z][\w-]*)*)/g)) {
      out.push(text.slice(last, m.index), ...(m[1] !== undefined ? [code(m[1])] : [m[2], code(m[3])]));
      last = m.index + m[0].length;
    }
    return [...out, text.slice(last)];
  }
  function failure(e) {
    const box = errorBox(e);
    if (e.detail && e.detail !== e.message) box.append(h("div", {}, h("code", { "data-testid": "error-detail" }, e.detail)));
    return box;
  }
  // what is in force, as the file of `green set` (the body of PUT without its period)
  function asFile(row) {
    if (!row) return { indicators: [], pv: null, process_emissions: [] };
    return { indicators: row.entries.indicators || [], pv: row.entries.pv ?? null, process_emissions: row.process || [] };
  }

  function sheet(block, notesZh) {
    if (block.error) return h("p", { class: "error", id: "green-error" }, block.error);
    return table([
      { label: t("gf_group"), get: (r) => pick(r.group_name, r.group_name_en) },
      { label: t("gf_indicator"), get: (r) => h("span", { "data-indicator": r.id }, pick(r.name, r.name_en)) },
      { label: t("gf_value"), num: true, get: (r) => h("span", { "data-value": r.id }, fig(r.value)) },
      { label: t("unit"), get: (r) => r.unit },
      { label: t("gf_baseline"), num: true, get: (r) => h("span", { "data-baseline": r.id }, fig(r.baseline)) },
      { label: t("gf_leading"), num: true, get: (r) => h("span", { "data-leading": r.id }, fig(r.leading)) },
      { label: t("gf_position"), get: (r) => h("span", { "data-position": r.id, "data-pos": r.position ?? "" },
        r.position ? pick(r.position_name, r.position_name_en) : "—") },
      { label: t("gf_origin"), get: (r) => t(`gf_${r.origin}`) },
      { label: t("note"), get: (r) => h("span", { "data-reference": r.id }, noted(half((!en() && notesZh[r.id]) || r.note) || r.reference || "")) },
    ], block.rows, { id: "green-rows", "data-count": block.rows.length });
  }

  function ghgSummary(block) {
    if (!block.report) return h("p", { class: "error", id: "ghg-error" }, block.error || "—");
    const g = block.report;
    return h("div", {},
      table([
        { label: t("gf_category"), get: (c) => h("span", { "data-ghg": c.id }, pick(c.name, c.name_en)) },
        { label: t("gf_tco2e"), num: true, get: (c) => h("span", { "data-tco2e": c.id }, fig(c.tco2e)) },
      ], [...g.categories, { id: "total", name: "合计", name_en: "Total", tco2e: g.total_tco2e }], { id: "ghg-categories" }),
      g.gaps.length ? h("ul", { class: "muted" }, g.gaps.map((n) => h("li", {}, pick(n.text, n.text_en)))) : null,
      h("p", { class: "muted" }, `${t("gf_factors")}: ${half(g.factor_table)}`));
  }

  // -- the form -------------------------------------------------------------------------
  const GROUPS = ["energy_low_carbon", "resource_efficiency", "clean_production", "green_product", "land_intensive"];
  const GASES = ["CO2", "CH4", "N2O", "HFCs", "PFCs", "SF6", "NF3"];
  const gasName = (g) => (window.I18N.zh[`gf_gas_${g}`] ? t(`gf_gas_${g}`) : g);
  const NUMBER = /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;

  const input = (key, value, label, attrs = {}) =>
    h("input", { "data-gf": key, value: value ?? "", "aria-label": label, title: label, ...attrs });
  const field = (label, el) => h("label", { class: "gf-f" }, h("span", {}, label), el);
  function select(key, value, label, options) {
    const el = h("select", { "data-gf": key, "aria-label": label, title: label },
      options.map(([v, text]) => h("option", { value: v }, text)));
    el.value = value ?? "";
    return el;
  }
  // The inputs of a section, read: numbers parsed (full-width digits, as a Chinese input
  // method types them, read as digits), "" as null; one that is not a number is a problem
  // naming the field, the input kept to be marked.
  function reader(problems) {
    return {
      num(el, what) {
        const typed = el.value.trim();
        const ascii = typed.replace(/[０-９．－＋]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0));
        if (ascii === "") return null;
        if (!NUMBER.test(ascii)) {
          problems.push({ el, text: say("gf_bad_number", { field: what, value: typed }) });
          return null;
        }
        return Number(ascii);
      },
      text: (el) => el.value.trim(),
    };
  }
  function mark(el) {
    if (!el) return;
    el.classList.add("gf-bad");
    el.setAttribute("aria-invalid", "true");
  }

  // One indicator: a row (and, for one the enterprise enters whole, a second row with
  // what it is). `read` gives its entry (null: nothing entered), `at(field)` the input
  // of a field the server names.
  function indicatorItem(entry, row, isNew) {
    const measured = row?.origin === "measured" || (!row && !isNew && !entry.group);
    const name = row ? pick(row.name, row.name_en) : pick(entry.name, entry.name_en) || entry.id || t("gf_new_indicator");
    const label = (what) => `${name} · ${what}`;
    const f = {
      baseline: input("baseline", entry.baseline, label(t("gf_baseline")), { size: 8, inputmode: "decimal" }),
      leading: input("leading", entry.leading, label(t("gf_leading")), { size: 8, inputmode: "decimal" }),
      reference: input("reference", entry.reference, label(t("gf_reference")), { size: 24, placeholder: t("gf_reference_hint") }),
    };
    const trs = [];
    if (measured) {
      trs.push(h("tr", { "data-gf-row": entry.id, "data-origin": "measured" },
        h("td", {}, name), h("td", {}, row?.unit ?? ""), h("td", { class: "num" }, fig(row?.value)),
        h("td", {}, f.baseline), h("td", {}, f.leading), h("td", {}, f.reference), h("td", {})));
    } else {
      Object.assign(f, {
        value: input("value", entry.value, label(t("gf_value")), { size: 8, inputmode: "decimal" }),
        id: input("id", entry.id, label(t("gf_id")), { size: 18, readonly: !isNew, placeholder: t("gf_id_hint") }),
        name: input("name", entry.name, label(t("gf_name")), { size: 16 }),
        name_en: input("name_en", entry.name_en, label(t("gf_name_en")), { size: 16 }),
        unit: input("unit", entry.unit, label(t("gf_unit")), { size: 6 }),
        group: select("group", entry.group, label(t("gf_group")),
          [["", t("gf_choose")], ...GROUPS.map((g) => [g, t(`gf_g_${g}`)])]),
        direction: select("direction", entry.direction, label(t("gf_direction")),
          [["", t("gf_choose")], ["lower", t("gf_dir_lower")], ["higher", t("gf_dir_higher")]]),
        evidence: input("evidence", entry.evidence, label(t("gf_evidence")), { size: 24 }),
      });
      const remove = h("button", { class: "link", "data-gf-remove": entry.id || "", onclick: () => { trs.forEach((r) => r.remove()); item.removed = true; } }, t("gf_remove"));
      trs.push(
        h("tr", { "data-gf-row": entry.id || "", "data-origin": "entered" },
          h("td", {}, name), h("td", {}, entry.unit ?? ""), h("td", {}, f.value),
          h("td", {}, f.baseline), h("td", {}, f.leading), h("td", {}, f.reference), h("td", {}, remove)),
        h("tr", { class: "gf-more", "data-gf-more": entry.id || "" }, h("td", { colspan: 7 }, h("div", { class: "gf-fields" },
          field(t("gf_id"), f.id), field(t("gf_name"), f.name), field(t("gf_name_en"), f.name_en),
          field(t("gf_unit"), f.unit), field(t("gf_group"), f.group), field(t("gf_direction"), f.direction),
          field(t("gf_evidence"), f.evidence)))));
    }
    const item = {
      trs, removed: false,
      id: () => f.id?.value.trim() || entry.id,
      at: (key) => f[key] || trs[0],
      read(problems) {
        const r = reader(problems);
        const common = { baseline: r.num(f.baseline, label(t("gf_baseline"))), leading: r.num(f.leading, label(t("gf_leading"))), reference: r.text(f.reference) };
        if (measured) {
          if (common.baseline === null && common.leading === null && !common.reference) return null;
          return { id: entry.id, ...common };
        }
        return {
          id: r.text(f.id), group: f.group.value || null, name: r.text(f.name), name_en: r.text(f.name_en),
          unit: r.text(f.unit), direction: f.direction.value || null, value: r.num(f.value, label(t("gf_value"))),
          evidence: r.text(f.evidence), ...common,
        };
      },
    };
    return item;
  }

  const HEAD = () => h("thead", {}, h("tr", {}, [t("gf_indicator"), t("unit"), t("gf_value"), t("gf_baseline"),
    t("gf_leading"), t("gf_reference"), ""].map((c) => h("th", {}, c))));

  function indicatorsSection(doc) {
    const entries = new Map((doc.current?.entries.indicators || []).map((e) => [e.id, e]));
    const rows = doc.green.rows || [];
    const items = [];
    const parts = [];
    let body = null;
    let group = null;
    for (const r of rows) {
      if (r.group !== group) {
        group = r.group;
        body = h("tbody", {});
        parts.push(h("h3", { "data-gf-group": group }, pick(r.group_name, r.group_name_en)), h("table", { class: "gf-table" }, HEAD(), body));
      }
      const item = indicatorItem(entries.get(r.id) || { id: r.id }, r, false);
      entries.delete(r.id);
      items.push(item);
      body.append(...item.trs);
    }
    // entries the sheet could not place (it refused them: its error says why), and new ones
    const more = h("tbody", {});
    for (const e of entries.values()) {
      const item = indicatorItem(e, null, false);
      items.push(item);
      more.append(...item.trs);
    }
    const moreTable = h("table", { class: "gf-table", id: "gf-more", hidden: !more.children.length }, HEAD(), more);
    const add = h("button", { id: "gf-add-indicator", onclick: () => {
      const item = indicatorItem({}, null, true);
      items.push(item);
      more.append(...item.trs);
      moreTable.hidden = false;
      item.at("id").focus();
    } }, `+ ${t("gf_add_indicator")}`);
    parts.push(h("h3", {}, t("gf_other_indicators")), moreTable, add);
    return { el: h("div", { id: "gf-indicators" }, parts), items };
  }

  function pvSection(doc) {
    const pv = doc.current?.entries.pv || {};
    const known = doc.generation_meters || [];
    // meters named before that are not generation meters (a PV submeter): kept, shown
    const ids = [...known.map((m) => m.id), ...(pv.meters || []).filter((id) => !known.some((m) => m.id === id))];
    const boxes = ids.map((id) => {
      const m = known.find((x) => x.id === id);
      const box = h("input", { type: "checkbox", "data-gf-meter": id, checked: (pv.meters || []).includes(id) });
      return h("label", { class: "gf-meter" }, box, " ", m ? `${pick(m.name, m.name_en)} (${id})` : id,
        m && m.quantity !== null ? h("span", { class: "muted" }, ` ${num(m.quantity)} ${m.unit}`) : "");
    });
    const f = {
      meters: h("div", { class: "row", id: "gf-pv-meters" }, boxes.length ? boxes : h("span", { class: "muted" }, t("gf_pv_no_meters"))),
      generation_kwh: input("generation_kwh", pv.generation_kwh, t("gf_pv_generation"), { size: 10, inputmode: "decimal" }),
      exported_kwh: input("exported_kwh", pv.exported_kwh || "", t("gf_pv_exported"), { size: 10, inputmode: "decimal" }),
      purchased_renewable_kwh: input("purchased_renewable_kwh", pv.purchased_renewable_kwh || "", t("gf_pv_purchased"), { size: 10, inputmode: "decimal" }),
      evidence: input("evidence", pv.evidence, t("gf_evidence"), { size: 30 }),
    };
    const el = h("div", { id: "gf-pv" },
      h("h3", {}, t("gf_pv")), h("p", { class: "muted" }, t("gf_pv_note")),
      field(t("gf_pv_meters"), f.meters),
      h("div", { class: "gf-fields" }, field(t("gf_pv_generation"), f.generation_kwh), field(t("gf_pv_exported"), f.exported_kwh),
        field(t("gf_pv_purchased"), f.purchased_renewable_kwh), field(t("gf_evidence"), f.evidence)));
    return {
      el,
      at: (key) => f[key] || el,
      read(problems) {
        const r = reader(problems);
        const meters = [...el.querySelectorAll("[data-gf-meter]")].filter((b) => b.checked).map((b) => b.dataset.gfMeter);
        const out = { meters, generation_kwh: r.num(f.generation_kwh, t("gf_pv_generation")), evidence: r.text(f.evidence) };
        for (const key of ["exported_kwh", "purchased_renewable_kwh"]) {
          const v = r.num(f[key], t(`gf_pv_${key === "exported_kwh" ? "exported" : "purchased"}`));
          if (v !== null) out[key] = v;  // blank: the model's 0
        }
        const empty = !meters.length && out.generation_kwh === null && out.exported_kwh === undefined
          && out.purchased_renewable_kwh === undefined && !out.evidence;
        return empty ? null : out;
      },
    };
  }

  function processItem(p) {
    const label = (what) => `${t("gf_process")} · ${what}`;
    const f = {
      source: input("source", p.source, label(t("gf_proc_source")), { size: 16 }),
      gas: select("gas", p.gas || "CO2", label(t("gf_gas")), GASES.map((g) => [g, gasName(g)])),
      activity: input("activity", p.activity, label(t("gf_activity")), { size: 8, inputmode: "decimal" }),
      unit: input("unit", p.unit, label(t("unit")), { size: 5 }),
      factor: input("factor", p.factor, label(t("gf_factor")), { size: 8, inputmode: "decimal" }),
      factor_source: input("factor_source", p.factor_source, label(t("gf_factor_source")), { size: 16 }),
      gwp: input("gwp", p.gwp, label(t("gf_gwp")), { size: 6, inputmode: "decimal" }),
      gwp_source: input("gwp_source", p.gwp_source, label(t("gf_gwp_source")), { size: 12 }),
      evidence: input("evidence", p.evidence, label(t("gf_evidence")), { size: 16 }),
    };
    const item = {
      removed: false,
      at: (key) => f[key] || item.tr,
      read(problems) {
        const r = reader(problems);
        const out = { source: r.text(f.source), gas: f.gas.value, unit: r.text(f.unit), factor_source: r.text(f.factor_source),
          gwp: r.num(f.gwp, label(t("gf_gwp"))), gwp_source: r.text(f.gwp_source), evidence: r.text(f.evidence) };
        for (const key of ["activity", "factor"]) {
          const v = r.num(f[key], label(t(`gf_${key}`)));
          if (v !== null) out[key] = v;  // blank: the server says it is required
        }
        return out;
      },
    };
    item.tr = h("tr", { "data-gf-process": "" }, Object.values(f).map((el) => h("td", {}, el)),
      h("td", {}, h("button", { class: "link", onclick: () => { item.tr.remove(); item.removed = true; } }, t("gf_remove"))));
    return item;
  }

  function processSection(doc) {
    const items = [];
    const body = h("tbody", {});
    const addRow = (p) => {
      const item = processItem(p);
      items.push(item);
      body.append(item.tr);
      return item;
    };
    (doc.current?.process || []).forEach(addRow);
    const cols = ["gf_proc_source", "gf_gas", "gf_activity", "unit", "gf_factor", "gf_factor_source", "gf_gwp", "gf_gwp_source", "gf_evidence"];
    const el = h("div", { id: "gf-process" }, h("h3", {}, t("gf_process")), h("p", { class: "muted" }, t("gf_process_note")),
      h("table", { class: "gf-table", id: "gf-process-rows" }, h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, t(c))), h("th", {}))), body),
      h("button", { id: "gf-add-process", onclick: () => addRow({}).at("source").focus() }, `+ ${t("gf_add_process")}`));
    return { el, items };
  }

  // the fields a 422's detail names ("indicators.2.baseline: ...", "indicators: indicator
  // x: ...", "process_emissions.0.gwp: ...", "pv: ..."), marked; how many were found
  function locate(detail, sent) {
    let found = 0;
    for (const part of (detail || "").split("; ")) {
      let m;
      let el = null;
      if ((m = part.match(/^indicators\.(\d+)(?:\.(\w+))?/))) el = sent.indicators[Number(m[1])]?.at(m[2]);
      else if ((m = part.match(/\bindicator ([a-z0-9_]+)/))) el = sent.indicators.find((i) => i.id() === m[1])?.at(null);
      else if ((m = part.match(/^process_emissions\.(\d+)(?:\.(\w+))?/))) el = sent.process[Number(m[1])]?.at(m[2]);
      else if ((m = part.match(/^pv(?:\.(\w+))?/))) el = sent.pv.at(m[1]);
      if (el) { mark(el); found += 1; }
    }
    return found;
  }

  async function saving(msg, show, send) {
    try {
      show(await send(), h("p", { class: "ok", "data-testid": "green-saved" }, `✓ ${t("gf_saved")}`));
      return null;
    } catch (e) {
      msg.replaceChildren(failure(e));
      return e;
    }
  }

  function entryForm(doc, show) {
    const ind = indicatorsSection(doc);
    const pv = pvSection(doc);
    const proc = processSection(doc);
    const note = h("input", { id: "green-note", placeholder: t("note"), "aria-label": t("note"), size: 40 });
    const msg = h("div", { id: "green-msg" });
    const form = h("div", { id: "gf-form" });
    const save = h("button", { class: "primary", id: "green-save", onclick: async () => {
      msg.replaceChildren();
      form.querySelectorAll(".gf-bad").forEach((el) => { el.classList.remove("gf-bad"); el.removeAttribute("aria-invalid"); });
      const problems = [];
      const sent = { indicators: [], process: proc.items.filter((p) => !p.removed), pv };
      const indicators = [];
      for (const item of ind.items.filter((i) => !i.removed)) {
        const entry = item.read(problems);
        if (entry) { indicators.push(entry); sent.indicators.push(item); }
      }
      const body = { indicators, pv: pv.read(problems), process_emissions: sent.process.map((p) => p.read(problems)) };
      if (problems.length) {
        problems.forEach((p) => mark(p.el));
        problems[0].el.focus();
        msg.replaceChildren(h("div", { class: "error", role: "alert", id: "gf-problems" }, problems.map((p) => h("div", {}, p.text))));
        return;
      }
      const e = await saving(msg, show, () => api(`${E()}/green`, { method: "PUT", body: { ...body, from: S.from, to: S.to, note: note.value } }));
      if (e && locate(e.detail, sent)) {
        msg.append(h("p", { class: "muted" }, t("gf_marked")));
        form.querySelector(".gf-bad")?.scrollIntoView({ block: "center" });
      }
    } }, t("save"));
    form.append(h("p", { class: "muted" }, t("gf_form_note")), ind.el, pv.el, proc.el);
    return h("div", { class: "panel", id: "green-form" },
      h("h2", {}, t("gf_enter")), form,
      h("div", { class: "row" }, note, save), msg,
      advanced(doc, note, show));
  }

  // A YAML body is sent as it is (the server reads it as the CLI reads its file), with the
  // bar's period and the note appended as keys of its mapping: the text's own lines keep
  // their numbers, so a YAML error names the line the user sees.
  const putYaml = (text) => api(`${E()}/green`, { method: "PUT", raw: text, type: "application/yaml; charset=utf-8" });

  function advanced(doc, note, show) {
    // the file as its value, not as text in the page: it is the user's data, not a word of it
    const box = h("textarea", { id: "green-text", rows: 14, cols: 90, spellcheck: false, "aria-label": t("gf_advanced") });
    box.value = JSON.stringify(asFile(doc.current), null, 1);
    const msg = h("div", { id: "green-text-msg" });
    const save = h("button", { id: "green-save-text", onclick: async () => {
      msg.replaceChildren();
      let json;
      try { json = JSON.parse(box.value); } catch { json = undefined; }
      if (json !== undefined && (json === null || typeof json !== "object" || Array.isArray(json))) {
        msg.replaceChildren(h("p", { class: "error" }, t("gf_not_mapping")));
        return;
      }
      const period = { from: S.from, to: S.to, note: note.value };
      await saving(msg, show, () => (json !== undefined
        ? api(`${E()}/green`, { method: "PUT", body: { ...json, ...period } })
        : putYaml(`${box.value}\nfrom: "${S.from}"\nto: "${S.to}"\nnote: ${JSON.stringify(note.value)}\n`)));
    } }, t("gf_save_text"));
    return h("details", { id: "green-advanced" },
      h("summary", {}, t("gf_advanced")),
      h("p", { class: "muted" }, t("gf_adv_1"), code("ingest-server green set"), t("gf_adv_2"), code("JSON"), " / ", code("YAML"), t("gf_adv_3")),
      box, h("div", { class: "row" }, save), msg);
  }

  async function green(main) {
    main.append(h("p", { class: "muted" }, t("loading")));
    const show = (doc, saved) => {
      const trail = doc.history;
      main.replaceChildren(
        h("h2", {}, `${t("green")} · ${S.from} – ${S.to}`),
        h("p", { class: "muted" }, canEnter() ? t("gf_note") : `${t("read_only")}: ${t("gf_note")}`),
        saved || "",
        h("div", { class: "panel" }, h("h2", {}, t("gf_sheet")), sheet(doc.green, doc.notes_zh || {})),
        h("div", { class: "panel" }, h("h2", {}, t("gf_ghg")), ghgSummary(doc.ghg)),
        canEnter() ? entryForm(doc, show) : "",
        h("div", { class: "panel" }, h("h2", {}, t("gf_trail")),
          trail.length ? table([
            { label: t("time"), get: (r) => when(r.entered_at) }, { label: t("user"), get: (r) => r.entered_by },
            { label: t("gf_indicator"), num: true, get: (r) => num((r.entries.indicators || []).length, 0) },
            { label: t("gf_process"), num: true, get: (r) => num(r.process.length, 0) },
            { label: t("note"), get: (r) => r.note },
          ], trail, { id: "green-trail", "data-count": trail.length }) : h("p", { class: "muted", id: "green-trail", "data-count": 0 }, t("gf_none"))));
    };
    try { show(await api(`${E()}/green?${q({ from: S.from, to: S.to })}`)); } catch (e) { main.replaceChildren(failure(e)); }
  }

  FE.PAGES.push("green");
  FE.VIEWS.green = green;
})();
