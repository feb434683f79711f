"use strict";
// The green-factory page (绿色工厂), loaded after app.js and built on what it exposes
// (window.FE): for the bar's period, the indicator sheet in the standard's order (each
// figure beside the baseline and leading values the enterprise entered, and where it
// stands), the GHG summary by category with its total, and who entered the values when.
// The enterprise role (and admin) enters the period's values as the JSON of
// `ingest-server green set`'s file; a refusal shows the API's detail. A verifier reads.
// API: api/routes/green.py; the sheet and the summary: docs/green-ghg.md.
(() => {
  const FE = window.FE;
  const { S, h, table, errorBox, api, q, E, t, num } = FE;

  const canEnter = () => S.me?.role !== "verifier";
  const when = (iso) => FE.local(iso).slice(0, 16);
  const fig = (v) => (v === null || v === undefined ? "—" : num(v));
  const en = () => document.documentElement.lang === "en";
  const pick = (zh, eng) => (en() ? eng || zh : zh);
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

  function sheet(block) {
    if (block.error) return h("p", { class: "error", id: "green-error" }, block.error);
    return table([
      { label: t("gf_group"), get: (r) => pick(r.group_name, r.group_name_en) },
      { label: t("gf_indicator"), get: (r) => h("span", { "data-indicator": r.id }, pick(r.name, r.name_en)) },
      { label: t("gf_value"), num: true, get: (r) => fig(r.value) },
      { label: t("unit"), get: (r) => r.unit },
      { label: t("gf_baseline"), num: true, get: (r) => h("span", { "data-baseline": r.id }, fig(r.baseline)) },
      { label: t("gf_leading"), num: true, get: (r) => h("span", { "data-leading": r.id }, fig(r.leading)) },
      { label: t("gf_position"), get: (r) => h("span", { "data-position": r.id, "data-pos": r.position ?? "" },
        r.position ? pick(r.position_name, r.position_name_en) : "—") },
      { label: t("gf_origin"), get: (r) => t(`gf_${r.origin}`) },
      { label: t("note"), get: (r) => r.note || r.reference || "" },
    ], block.rows, { id: "green-rows", "data-count": block.rows.length });
  }

  function ghgSummary(block) {
    if (!block.report) return h("p", { class: "error", id: "ghg-error" }, block.error || "—");
    const g = block.report;
    return h("div", {},
      table([
        { label: t("gf_category"), get: (c) => h("span", { "data-ghg": c.id }, pick(c.name, c.name_en)) },
        { label: "tCO2e", num: true, get: (c) => fig(c.tco2e) },
      ], [...g.categories, { id: "total", name: "合计", name_en: "Total", tco2e: g.total_tco2e }], { id: "ghg-categories" }),
      g.gaps.length ? h("ul", { class: "muted" }, g.gaps.map((n) => h("li", {}, pick(n.text, n.text_en)))) : null,
      h("p", { class: "muted" }, `${t("gf_factors")}: ${g.factor_table}`));
  }

  function entryForm(doc, show) {
    const box = h("textarea", { id: "green-json", rows: 14, cols: 90, spellcheck: false },
      JSON.stringify(asFile(doc.current), null, 1));
    const note = h("input", { id: "green-note", placeholder: t("note"), size: 40 });
    const msg = h("div", { id: "green-msg" });
    const save = h("button", { class: "primary", id: "green-save", onclick: async () => {
      msg.replaceChildren();
      let body;
      try { body = JSON.parse(box.value); } catch (e) {
        msg.replaceChildren(h("p", { class: "error" }, `${t("gf_not_json")}: ${e.message}`));
        return;
      }
      try {
        const after = await api(`${E()}/green`, { method: "PUT", body: { ...body, from: S.from, to: S.to, note: note.value } });
        show(after, h("p", { class: "ok", "data-testid": "green-saved" }, `✓ ${t("gf_saved")}`));
      } catch (e) { msg.replaceChildren(failure(e)); }
    } }, t("save"));
    return h("div", { class: "panel", id: "green-form" },
      h("h2", {}, t("gf_enter")), h("p", { class: "muted" }, t("gf_enter_note")),
      box, h("div", { class: "row" }, note, save), msg);
  }

  async function green(main) {
    main.append(h("p", { class: "muted" }, t("loading")));
    const show = (doc, saved) => {
      const trail = doc.history;
      main.replaceChildren(
        h("h2", {}, `${t("green")} · ${S.from} – ${S.to}`),
        h("p", { class: "muted" }, canEnter() ? t("gf_note") : `${t("read_only")}: ${t("gf_note")}`),
        saved || "",
        h("div", { class: "panel" }, h("h2", {}, t("gf_sheet")), sheet(doc.green)),
        h("div", { class: "panel" }, h("h2", {}, t("gf_ghg")), ghgSummary(doc.ghg)),
        canEnter() ? entryForm(doc, show) : "",
        h("div", { class: "panel" }, h("h2", {}, t("gf_trail")),
          trail.length ? table([
            { label: t("time"), get: (r) => when(r.entered_at) }, { label: t("user"), get: (r) => r.entered_by },
            { label: t("gf_indicator"), num: true, get: (r) => num((r.entries.indicators || []).length, 0) },
            { label: t("gf_process"), num: true, get: (r) => num(r.process.length, 0) },
            { label: t("note"), get: (r) => r.note },
          ], trail, { id: "green-trail", "data-count": trail.length }) : h("p", { class: "muted", id: "green-trail" }, t("gf_none"))));
    };
    try { show(await api(`${E()}/green?${q({ from: S.from, to: S.to })}`)); } catch (e) { main.replaceChildren(failure(e)); }
  }

  FE.PAGES.push("green");
  FE.VIEWS.green = green;
})();
