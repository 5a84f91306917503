// The agreement editor's guided form: fills the terms (YAML) from fields for every term type:
// rate form, tier method, bases, periods and their scope, bands, a counterparty and the members
// of a buying group, eligibility (event, customer groups, segments and regions, excluded
// customers, product categories and brands, excluded products), growth, a gate, a minimum, caps, a guarantee, the accrual mode and the
// settlement. The server validates and previews the YAML as ever; the form only writes it.
// Nested parts are written as JSON, which is YAML too.
(function () {
  var form = document.getElementById("guided");
  if (!form) { return; }
  var terms = document.getElementById("terms");
  var bands = document.getElementById("bands");

  function value(name) {
    var field = form.elements[name];
    return field ? String(field.value).trim() : "";
  }
  function quoted(text) { return JSON.stringify(text); }  // JSON strings are valid YAML
  function list(name) {  // "a, b，c" -> ["a", "b", "c"] (Chinese commas too)
    return value(name).split(/[,，;；\s]+/).filter(Boolean);
  }
  // A number as typed, if it is one; else quoted, so that the server's check names the field
  // ("not a number") instead of YAML reading "1,000.5" as something else.
  function num(text) {
    return /^-?\d+(\.\d+)?$/.test(text) ? text : quoted(text);
  }
  function amount(name) { return num(value(name)); }
  function checked(name) { return form.elements[name] && form.elements[name].checked; }
  function some(object) { return Object.keys(object).length > 0; }

  function eligibility() {
    var found = {}, products = {}, include = {};
    if (value("g_event") !== "invoice") { found.event = value("g_event"); }
    var customers = {}, who = {}, attributes = {};
    if (list("g_groups").length) { who.group = list("g_groups"); }
    // A programme's customers by the master's attributes: segment and region.
    if (list("g_segments").length) { attributes.segment = list("g_segments"); }
    if (list("g_regions").length) { attributes.region = list("g_regions"); }
    if (some(attributes)) { who.attributes = attributes; }
    if (some(who)) { customers.include = who; }
    if (list("g_excluded_customers").length) {
      customers.exclude = {id: list("g_excluded_customers")};
    }
    if (some(customers)) { found.customers = customers; }
    if (list("g_categories").length) { include.category = list("g_categories"); }
    if (list("g_brands").length) { include.brand = list("g_brands"); }
    if (some(include)) { products.include = include; }
    if (list("g_excluded").length) { products.exclude = {id: list("g_excluded")}; }
    if (some(products)) { found.products = products; }
    return found;
  }

  // Terms the form did not write (a draft opened to correct, or text typed by hand) are not
  // replaced without asking: once declined, the form stops writing until the page reloads.
  var written = null, detached = false;
  function mayWrite() {
    if (detached) { return false; }
    var present = terms.value.trim();
    if (!present || terms.value === written) { return true; }
    if (window.confirm(form.dataset.replace)) { return true; }
    detached = true;
    document.getElementById("guided-detached").hidden = false;
    return false;
  }

  function write() {
    if (!mayWrite()) { return; }
    var lines = [];
    lines.push("id: " + quoted(value("g_id")));
    if (value("g_name")) { lines.push("name: " + quoted(value("g_name"))); }
    if (value("g_currency") && value("g_currency") !== "CNY") {
      lines.push("currency: " + quoted(value("g_currency")));
    }
    lines.push("term: {start: " + value("g_start") + ", end: " + value("g_end") + "}");
    if (value("g_effective")) { lines.push("effective_from: " + value("g_effective")); }
    if (value("g_counterparty") || list("g_members").length) {
      var parties = "parties: {counterparty: " + quoted(value("g_counterparty"));
      if (list("g_members").length) {  // a buying group: the members' sales are pooled
        parties += ", members: " + JSON.stringify(list("g_members")) + ", split: " + value("g_split");
      }
      lines.push(parties + "}");
    }
    var chosen = eligibility();
    if (some(chosen)) { lines.push("eligibility: " + JSON.stringify(chosen)); }
    lines.push("periods: {kind: " + value("g_periods") +
               (value("g_scope") === "term" ? ", scope: term" : "") + "}");
    lines.push("rebate:");
    lines.push("  form: " + value("g_form"));
    lines.push("  method: " + value("g_method"));
    lines.push("  basis: " + value("g_basis"));
    if (value("g_tier_basis")) { lines.push("  tier_basis: " + value("g_tier_basis")); }
    lines.push("  tiers:");
    var rows = bands.querySelectorAll("tr");
    for (var i = 0; i < rows.length; i++) {
      var cells = rows[i].querySelectorAll("input");
      var from = cells[0].value.trim(), to = cells[1].value.trim(), rate = cells[2].value.trim();
      if (!from && !rate) { continue; }
      // An empty rate is written empty: the check then asks for it instead of paying 0.
      lines.push("    - {from: " + num(from || "0") + (to ? ", to: " + num(to) : "") +
                 ", rate: " + num(rate) + "}");
    }
    if (value("g_growth")) {  // the bands are then percentages of the baseline (110 = 110%)
      lines.push("growth: {baseline: " + value("g_growth") +
                 (value("g_baseline") ? ", baseline_amount: " + amount("g_baseline") : "") +
                 ", mode: " + value("g_growth_mode") + "}");
    }
    if (value("g_minimum")) { lines.push("minimum: " + amount("g_minimum")); }
    if (value("g_gate_target")) {
      var gate = "gate: {measure: " + value("g_gate_measure") + ", target: " + amount("g_gate_target");
      if (list("g_gate_categories").length) {
        gate += ", products: " + JSON.stringify({include: {category: list("g_gate_categories")}});
      }
      lines.push(gate + "}");
    }
    var caps = [];
    if (value("g_cap")) { caps.push("per_period: " + amount("g_cap")); }
    if (value("g_cap_term")) { caps.push("per_term: " + amount("g_cap_term")); }
    if (caps.length) { lines.push("cap: {" + caps.join(", ") + "}"); }
    if (value("g_guarantee")) {
      lines.push("guarantee: {amount: " + amount("g_guarantee") +
                 (checked("g_carry") ? ", carry_forward: true" : "") + "}");
    }
    if (value("g_accrual") === "expected") { lines.push("accrual: {mode: expected}"); }
    lines.push("settlement: {form: " + value("g_settlement") +
               (checked("g_clawback") ? ", clawback: true" : "") + "}");
    if (value("g_contract")) {
      lines.push("contract: {reference: " + quoted(value("g_contract")) + ", document_sha256: " +
                 quoted(value("g_sha256")) + "}");
    }
    terms.value = lines.join("\n") + "\n";
    written = terms.value;
    terms.dispatchEvent(new Event("input", { bubbles: true }));  // live validation
  }

  form.addEventListener("input", write);
  form.addEventListener("change", write);  // selects and check boxes
  document.getElementById("add-band").addEventListener("click", function () {
    var row = bands.querySelector("tr").cloneNode(true);
    row.querySelectorAll("input").forEach(function (input) { input.value = ""; });
    bands.appendChild(row);
  });
})();
