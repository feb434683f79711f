"use strict";
// Downtime reasons and losses (停机原因与停机损失), loaded after app.js and built on what it
// exposes (window.FE). On a machine's page (app.js `machine`): the DOWN and IDLE stops of
// its window with the reason an operator attached, a control to attach, change or clear
// one (enterprise and admin; a verifier reads), the reasons whose interval late data moved
// ("interval changed"), the trail, and the alarm texts of the device on the timeline. The
// page "losses": the loss Pareto (all machines, per process, per machine) with the
// cumulative share, and MTBF/MTTR by cause. API: api/routes/downtime.py; figures:
// docs/kpi.md "Downtime reasons".
(() => {
  const FE = window.FE;
  const { S, h, table, errorBox, api, q, E, t, nm, word, num, pct, local, seconds, siteMidnight, addDays, chart, STATE_COLORS } = FE;

  // operators attach reasons (the enterprise role, and admin); a verifier reads
  const canAttach = () => S.me?.role !== "verifier";
  // a reason by its id in the console's language; null: time nobody gave a reason
  function reasonName(id, catalogue) {
    if (id === null || id === undefined) return t("dt_unassigned");
    const r = catalogue.find((x) => x.id === id);
    return r ? nm(r) : id;
  }
  const reasonCategory = (id, catalogue) => {
    const r = catalogue.find((x) => x.id === id);
    return r ? word("dtcat", r.category) : "";
  };
  const when = (iso) => local(iso).slice(0, 16);
  const hours = (s) => (s === null || s === undefined ? "—" : num(s / 3600, 2));
  // an error the API answered: its words in the console's language and, where those are
  // only what its code means, the server's own detail (which field, why) beside them
  function failure(e) {
    const box = errorBox(e);
    if (e.detail && e.detail !== e.message) box.append(h("div", {}, h("code", { "data-testid": "error-detail" }, e.detail)));
    return box;
  }

  // -- a machine's stops ----------------------------------------------------------------
  function attachControl(s, catalogue, send, msg) {
    const offered = catalogue.filter((r) => r.active && (r.applies_to === "both" || r.applies_to === s.state));
    const select = h("select", { "data-attach": s.start },
      h("option", { value: "" }, `— ${t("dt_choose")} —`),
      offered.map((r) => h("option", { value: r.id, selected: r.id === s.reason }, `${nm(r)} · ${word("dtcat", r.category)}`)));
    const note = h("input", { value: s.note || "", placeholder: t("note"), size: 16, "data-attach-note": s.start });
    const save = h("button", { class: "primary", "data-attach-save": s.start, onclick: () => {
      if (!select.value) { msg.replaceChildren(h("p", { class: "muted" }, t("dt_choose_first"))); return; }
      send(s.start, select.value, note.value);
    } }, t("save"));
    const clear = s.reason ? h("button", { class: "link", "data-attach-clear": s.start, onclick: () => send(s.start, null, "") }, t("dt_clear")) : null;
    return h("div", { class: "row dt-attach" }, select, note, save, clear);
  }

  const change = (v, catalogue) => (v ? `${reasonName(v.reason, catalogue)}${v.note ? ` (${v.note})` : ""}` : "—");

  // the stops panel, the trail and the alarms of machine `eq` over [start, end); called
  // by app.js `machine` once its timeline `gantt` is drawn
  async function machineDowntime(eq, start, end, gantt) {
    const base = `${E()}/equipment/${encodeURIComponent(eq.id)}`;
    const range = q({ start: start.toISOString(), end: end.toISOString() });
    const panel = h("div", { class: "panel", id: "downtime" }, h("p", { class: "muted" }, t("loading")));
    const alarmBox = h("div", { id: "alarms" });
    gantt.after(alarmBox);
    gantt.closest(".panel").after(panel);
    const msg = h("div", { id: "downtime-msg" });
    let catalogue = [];
    async function send(stopStart, reason, note) {
      msg.replaceChildren();
      try {
        await api(`${base}/stops/reason`, { method: "PUT", body: { start: stopStart, reason, note } });
        await refresh();
        msg.replaceChildren(h("p", { class: "ok", "data-testid": "downtime-saved" }, `✓ ${reason ? t("dt_saved") : t("dt_cleared")}`));
      } catch (e) { msg.replaceChildren(failure(e)); }
    }
    async function refresh() {
      const [stops, trail] = await Promise.all([api(`${base}/stops?${range}`), api(`${E()}/downtime-audit?${q({ equipment: eq.id })}`)]);
      const write = canAttach();
      panel.replaceChildren(
        h("h2", {}, t("dt_stops")),
        h("p", { class: "muted" }, write ? t("dt_stops_note") : `${t("read_only")}: ${t("dt_stops_read")}`),
        table([
          { label: t("start"), get: (s) => h("span", { "data-stop": s.start }, when(s.start)) },
          { label: t("end"), get: (s) => (s.open ? t("dt_open") : when(s.end)) },
          { label: t("col_state"), get: (s) => h("span", { class: `dt-state st-${s.state}` }, t(`state_${s.state}`)) },
          { label: t("duration"), num: true, get: (s) => seconds((new Date(s.end) - new Date(s.start)) / 1000) },
          { label: t("reason"), get: (s) => h("span", { "data-stop-reason": s.start, "data-reason": s.reason ?? "", class: s.reason ? null : "muted" },
            reasonName(s.reason, catalogue), s.reason ? h("small", { class: "muted" }, ` · ${reasonCategory(s.reason, catalogue)}`) : null) },
          { label: t("note"), get: (s) => s.note || "" },
          { label: t("dt_who"), get: (s) => (s.account ? `${s.account} · ${when(s.at)}` : "—") },
          ...(write ? [{ label: "", get: (s) => attachControl(s, catalogue, send, msg) }] : []),
        ], stops.stops, { id: "stops", "data-count": stops.stops.length }),
        msg,
        h("div", { id: "dt-changed", hidden: !stops.changed.length },
          h("h2", {}, `${t("dt_changed")} (${stops.changed.length})`), h("p", { class: "muted" }, t("dt_changed_note")),
          table([
            { label: t("start"), get: (c) => when(c.start) },
            { label: t("col_state"), get: (c) => t(`state_${c.state}`) },
            { label: t("reason"), get: (c) => h("span", { "data-changed": c.start }, reasonName(c.reason, catalogue)) },
            { label: t("note"), get: (c) => c.note },
            { label: t("dt_who"), get: (c) => `${c.account} · ${when(c.at)}` },
            ...(write ? [{ label: "", get: (c) => h("button", { class: "link", "data-changed-clear": c.start, onclick: () => send(c.start, null, "") }, t("dt_clear")) }] : []),
          ], stops.changed)),
        h("h2", {}, t("dt_audit")),
        table([
          { label: t("time"), get: (a) => when(a.at) }, { label: t("user"), get: (a) => a.account },
          { label: t("dt_stop"), get: (a) => `${when(a.start)} ${t(`state_${a.state}`)}` },
          { label: t("change"), get: (a) => `${change(a.old, catalogue)} → ${change(a.new, catalogue)}` },
        ], trail, { id: "dt-audit", "data-count": trail.length }));
    }
    try {
      const [reasons, alarms] = await Promise.all([api(`${E()}/downtime-reasons`), api(`${base}/alarms?${range}`)]);
      catalogue = reasons;
      showAlarms(alarms.alarms, eq, gantt, alarmBox);
      await refresh();
    } catch (e) { panel.replaceChildren(failure(e)); }
  }

  // the device's alarms: a row of the timeline (each span with its text) and a list
  function showAlarms(alarms, eq, gantt, box) {
    const text = (a) => a.text ?? `${a.tag} = ${num(a.value)}`;
    box.replaceChildren(h("h2", {}, `${t("dt_alarms")} (${alarms.length})`),
      alarms.length ? table([
        { label: t("start"), get: (a) => when(a.start) }, { label: t("end"), get: (a) => when(a.end) },
        { label: t("duration"), num: true, get: (a) => seconds((new Date(a.end) - new Date(a.start)) / 1000) },
        { label: t("tag"), get: (a) => a.tag }, { label: t("dt_alarm_text"), get: (a) => h("span", { "data-alarm": a.tag }, text(a)) },
      ], alarms, { id: "alarm-list" }) : h("p", { class: "muted" }, t("dt_no_alarms")));
    if (!alarms.length || !window.Plotly) return;
    const row = t("dt_alarms");
    window.Plotly.addTraces(gantt, [{
      type: "bar", orientation: "h", name: row, marker: { color: "#7a2e8e" },
      y: alarms.map(() => row), base: alarms.map((a) => local(a.start)),
      x: alarms.map((a) => new Date(a.end) - new Date(a.start)),
      text: alarms.map(text), textposition: "inside", insidetextanchor: "start",
      customdata: alarms.map((a) => [when(a.start).slice(5), when(a.end).slice(5), text(a)]),
      hovertemplate: `${row}: %{customdata[2]} · %{customdata[0]} – %{customdata[1]}<extra></extra>`,
    }]);
    // two rows now: name them
    window.Plotly.relayout(gantt, { "yaxis.visible": true, "yaxis.categoryorder": "array", "yaxis.categoryarray": [row, nm(eq)], "margin.l": 90 });
  }

  // -- the losses page --------------------------------------------------------------------
  // the scope shown (all machines, per process, per machine) and the group of it, kept
  // while the enterprise stays the same; the site and process are the bar's filters
  const F = { ent: null, scope: "all", group: "" };

  function paretoChart(el, p, catalogue) {
    const names = p.bars.map((b) => reasonName(b.reason, catalogue));
    const bar = (key, state) => ({
      type: "bar", name: t(`state_${state}`), x: names, y: p.bars.map((b) => b[key] / 3600),
      marker: { color: STATE_COLORS[state] }, hovertemplate: `%{x}: %{y:.2f} ${t("h")}<extra>${t(`state_${state}`)}</extra>`,
    });
    chart(el, [bar("down_s", "DOWN"), bar("idle_s", "IDLE"), {
      type: "scatter", mode: "lines+markers", name: t("dt_cumulative"), x: names, y: p.bars.map((b) => 100 * b.cumulative_share),
      yaxis: "y2", line: { color: "#12283d" }, hovertemplate: "%{x}: %{y:.1f} %<extra></extra>",
    }], {
      barmode: "stack",
      yaxis: { title: { text: `${t("dt_loss")} (${t("h")})` }, rangemode: "tozero" },
      yaxis2: { title: { text: `${t("dt_cumulative")} (%)` }, overlaying: "y", side: "right", range: [0, 105], tickmode: "linear", tick0: 0, dtick: 20, showgrid: false },
      margin: { l: 60, r: 60, t: 20, b: 90 },
    });
  }

  async function losses(main) {
    if (F.ent !== S.ent) Object.assign(F, { ent: S.ent, scope: "all", group: "" });
    main.append(h("p", { class: "muted" }, t("loading")));
    const info = S.info[S.ent] || {};
    const start = siteMidnight(S.from).toISOString();
    const end = siteMidnight(addDays(S.to, 1)).toISOString();
    const [doc, eqs] = await Promise.all([
      api(`${E()}/losses?${q({ start, end, site: S.site, process: S.proc })}`),
      api(`${E()}/equipment`),
    ]);
    const catalogue = doc.reasons;
    const procName = (id) => { const p = (info.processes || []).find((x) => x.id === id); return p ? nm(p) : id || "—"; };
    const eqName = (id) => { const e = eqs.find((x) => x.id === id); return e ? `${nm(e)} (${id})` : id; };
    const groups = { all: doc.total, process: doc.by_process, equipment: doc.by_equipment }[F.scope];
    const shown = groups.find((g) => g.group === F.group) || groups[0];
    const groupName = (g) => (F.scope === "process" ? procName(g.group) : F.scope === "equipment" ? eqName(g.group) : t("dt_all"));
    const pick = (key, value) => { F[key] = value; if (key === "scope") F.group = ""; FE.render(); };
    const pareto = h("div", { class: "chart", id: "chart-pareto" });
    main.replaceChildren(
      h("h2", {}, `${t("losses")} · ${S.from} – ${S.to}`),
      h("div", { class: "row tabs" },
        ["all", "process", "equipment"].map((s) => h("button", { class: F.scope === s ? "on" : null, "data-scope": s, onclick: () => pick("scope", s) },
          { all: t("dt_all"), process: t("dt_per_process"), equipment: t("dt_per_equipment") }[s])),
        F.scope !== "all" && groups.length ? h("select", { "data-loss-group": F.scope, onchange: (ev) => pick("group", ev.target.value) },
          groups.map((g) => h("option", { value: g.group, selected: g === shown }, `${groupName(g)} · ${hours(g.loss_s)} ${t("h")}`))) : null),
      h("p", { class: "muted" }, t("dt_losses_note")),
      shown ? h("div", { class: "panel", id: "pareto", "data-group": shown.group ?? "" },
        h("h2", {}, `${t("dt_pareto")} · ${groupName(shown)} · ${hours(shown.loss_s)} ${t("h")}`), pareto,
        table([
          { label: t("reason"), get: (b) => h("span", { "data-bar": b.reason ?? "" }, reasonName(b.reason, catalogue)) },
          { label: t("dt_category"), get: (b) => (b.reason ? reasonCategory(b.reason, catalogue) : "—") },
          { label: t("dt_stop_count"), num: true, get: (b) => num(b.stops, 0) },
          { label: `${t("state_DOWN")} (${t("h")})`, num: true, get: (b) => hours(b.down_s) },
          { label: `${t("state_IDLE")} (${t("h")})`, num: true, get: (b) => hours(b.idle_s) },
          { label: `${t("dt_loss")} (${t("h")})`, num: true, get: (b) => hours(b.loss_s) },
          { label: t("dt_share"), num: true, get: (b) => pct(b.share) },
          { label: t("dt_cumulative"), num: true, get: (b) => pct(b.cumulative_share) },
        ], shown.bars, { id: "pareto-bars" }))
        : h("p", { class: "panel muted", id: "pareto", "data-group": "" }, t("dt_no_loss")),
      h("div", { class: "panel" },
        h("h2", {}, t("dt_by_cause")),
        h("p", { class: "muted" }, `${t("dt_by_cause_note")} ${t("dt_running")}: ${hours(doc.running_s)} ${t("h")}`),
        table([
          { label: t("reason"), get: (c) => h("span", { "data-cause": c.reason ?? "" }, reasonName(c.reason, catalogue)) },
          { label: t("dt_events"), num: true, get: (c) => num(c.events, 0) },
          { label: `${t("state_DOWN")} (${t("h")})`, num: true, get: (c) => hours(c.down_s) },
          { label: `MTBF (${t("h")})`, num: true, get: (c) => hours(c.mtbf_s) },
          { label: `MTTR (${t("h")})`, num: true, get: (c) => hours(c.mttr_s) },
        ], doc.by_cause, { id: "causes" })));
    if (shown) paretoChart(pareto, shown, catalogue);
  }

  FE.PAGES.splice(FE.PAGES.indexOf("equipment") + 1, 0, "losses");
  FE.VIEWS.losses = losses;
  FE.machineDowntime = machineDowntime;
})();
