"use strict";
// The meter register and the declaration (计量器具一览表与承诺) as a report of the period
// would state them, so that an enterprise sees before it issues one which meters'
// calibration is expired, expiring or missing, and whether its declaration is entered.
// Loaded after app.js and built on what it exposes (window.FE): the energy page gets the
// register under its own content, the evidence page a line on the declaration. API:
// api/routes/declared.py; the states: evidence/declared.py, docs/kpi.md#meter-register.
(() => {
  const FE = window.FE;
  const { S, h, table, errorBox, api, q, E, t, nm } = FE;
  const STATES = ["valid", "expires_in_period", "expired", "missing"];
  const en = () => S.lang === "en";

  async function registerPanel() {
    const doc = await api(`${E()}/meter-register?${q({ from: S.from, to: S.to })}`);
    const rows = doc.meters.filter((m) => !S.site || m.site === S.site);
    const count = Object.fromEntries(STATES.map((k) => [k, rows.filter((m) => m.status === k).length]));
    const state = (m) => h("span", { class: `reg-state reg-${m.status}`, "data-reg-state": m.id }, t(`reg_${m.status}`));
    const box = table([
      { label: t("meters"), get: (m) => h("span", { "data-reg-meter": m.id }, `${nm(m)} (${m.id})`) },
      { label: t("reg_serial"), get: (m) => m.serial || "—" },
      { label: t("reg_model"), get: (m) => m.model || "—" },
      { label: t("reg_class"), get: (m) => m.accuracy_class || "—" },
      { label: t("reg_certificate"), get: (m) => m.certificate || "—" },
      { label: t("reg_issued_by"), get: (m) => m.issued_by || "—" },
      { label: t("reg_valid_until"), get: (m) => m.valid_until || "—" },
      { label: t("col_state"), get: state },
      { label: t("reg_warning"), get: (m) => h("span", { "data-reg-warning": m.id }, (en() ? m.warning_en : m.warning) || "") },
    ], rows, { id: "meter-register", "data-count": rows.length });
    // the rows a report would warn about: highlighted
    box.querySelectorAll("tbody tr:not([data-empty])").forEach((tr, i) => {
      if (rows[i].status !== "valid") tr.classList.add("reg-row-bad");
    });
    return h("div", { class: "panel", id: "register" },
      h("h2", {}, `${t("reg_title")} · ${t("reg_as_of")} ${doc.as_of}`),
      h("p", { class: "row", "data-testid": "reg-summary" }, STATES.map((k) =>
        h("span", { class: `reg-state reg-${k}`, "data-reg-count": k }, `${t(`reg_${k}`)} ${count[k]}`))),
      box,
      h("p", { class: "muted", "data-testid": "reg-basis" }, `${t("reg_basis")}: ${en() ? doc.basis_en : doc.basis}`));
  }

  async function declarationLine() {
    const d = await api(`${E()}/declaration`);
    if (d.signatory) {
      return h("p", { class: "panel", id: "declaration", "data-default": String(d.default) },
        `${t("reg_declaration")}: `, h("b", { "data-testid": "signatory" }, d.signatory), ` · ${d.position}`,
        h("span", { class: "muted" }, ` · ${d.default ? t("reg_default_text") : t("reg_own_text")}`));
    }
    return h("div", { class: "panel", id: "declaration", "data-default": String(d.default) },
      h("p", { class: "bad", "data-testid": "no-declaration" }, `⚠ ${t("reg_no_declaration")}`),
      h("p", { class: "muted" }, t("reg_how_1"), h("code", {}, "declaration:"), t("reg_how_2"),
        h("code", {}, "ingest-server registry import"), t("reg_how_3")));
  }

  // each page as app.js draws it, then this file's part; a failure here shows in the part
  const after = (view, part, place) => async (main) => {
    await view(main);
    let el;
    try { el = await part(); } catch (e) { el = errorBox(e); }
    place(main, el);
  };
  FE.VIEWS.energy = after(FE.VIEWS.energy, registerPanel, (main, el) => main.append(el));
  FE.VIEWS.evidence = after(FE.VIEWS.evidence, declarationLine, (main, el) => {
    const issue = main.querySelector(".panel");
    if (issue) issue.after(el); else main.prepend(el);
  });
})();
