// Schedules: list with their next fire times, add (cron or once), enable/disable, delete.

import { get, call } from "./api.js";
import { h, flash, when, table } from "./util.js";

export async function schedulesPage(ctx) {
  const [list, specs] = await Promise.all([get("/schedules"), get("/specs")]);
  const admin = ctx.can("admin");
  const rows = list.map((s) => [
    s.name,
    s.spec ? h("a", { href: `#/specs?name=${encodeURIComponent(s.spec)}` }, s.spec) : h("span", { class: "muted" }, "inline spec"),
    s.cron ? h("code", {}, `${s.cron} (${s.timezone})`) : `once, ${when(s.at_ms)}`,
    s.enabled ? "enabled" : h("span", { class: "muted" }, "disabled"),
    s.next_fires.length ? h("ul", { class: "small" }, s.next_fires.slice(0, 3).map((f) => h("li", {}, f))) : h("span", { class: "muted" }, "none"),
    s.last_fired_ms ? when(s.last_fired_ms) : "never",
    s.last_error ? h("span", { class: "worse" }, s.last_error) : "",
    admin ? h("div", { class: "row" },
      h("button", { type: "button", "aria-label": `${s.enabled ? "Disable" : "Enable"} ${s.name}`, onclick: () => act(ctx, () => call("PATCH", `/schedules/${s.id}`, { enabled: !s.enabled })) }, s.enabled ? "Disable" : "Enable"),
      h("button", { type: "button", class: "danger", "aria-label": `Delete ${s.name}`, onclick: () => confirm(`Delete schedule ${s.name}?`) && act(ctx, () => call("DELETE", `/schedules/${s.id}`)) }, "Delete")) : "",
  ]);
  const nodes = [h("h1", {}, "Schedules"),
    rows.length ? table(["Name", "Spec", "When", "State", "Next", "Last fired", "Last problem", ""], rows) : h("p", { class: "muted" }, "No schedules yet.")];
  if (admin) nodes.push(addForm(ctx, specs));
  ctx.view.replaceChildren(...nodes);
}

async function act(ctx, f) {
  try { await f(); await schedulesPage(ctx); } catch (e) { flash(e.message, true); }
}

function addForm(ctx, specs) {
  const kind = h("select", { id: "s-kind", name: "kind" }, h("option", { value: "cron" }, "repeating (cron)"), h("option", { value: "at" }, "once"));
  const cron = h("input", { id: "s-cron", name: "cron", value: "0 9 * * MON-FRI", size: 18 });
  const at = h("input", { id: "s-at", name: "at", type: "datetime-local" });
  const zone = h("input", { id: "s-zone", name: "timezone", value: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC", size: 16 });
  const form = h("form", { class: "panel", "aria-label": "Add a schedule", onsubmit: async (ev) => {
      ev.preventDefault();
      const body = { name: form.elements.name.value, spec: form.elements.spec.value, enabled: true };
      if (kind.value === "cron") { body.cron = cron.value; body.timezone = zone.value; } else { body.at = new Date(at.value).toISOString(); }
      await act(ctx, () => call("POST", "/schedules", body));
      flash(`Schedule ${body.name} added.`);
    } },
    h("h2", {}, "Add a schedule"),
    specs.length ? null : h("p", { class: "muted" }, "Schedules run stored specs: save one from New run first."),
    h("div", { class: "row" },
      h("label", { for: "s-name" }, "Name", h("input", { id: "s-name", name: "name", required: true, size: 18 })),
      h("label", { for: "s-spec" }, "Stored spec", h("select", { id: "s-spec", name: "spec", required: true }, specs.map((s) => h("option", { value: s.name }, s.name)))),
      h("label", { for: "s-kind" }, "Kind", kind),
      h("label", { for: "s-cron" }, "Cron (min hour day month weekday)", cron),
      h("label", { for: "s-zone" }, "Time zone", zone),
      h("label", { for: "s-at" }, "Once at", at),
      h("button", { type: "submit", class: "primary" }, "Add")));
  return form;
}
