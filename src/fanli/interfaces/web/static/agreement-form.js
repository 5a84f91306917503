// The agreement editor's guided form: fills the terms (YAML) from fields for the common shapes
// (rate form, tier method, basis, periods, bands, a counterparty, a minimum, a cap, the
// settlement form). The server validates and previews the YAML as ever; the form only writes it.
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

  function write() {
    var lines = [];
    lines.push("id: " + quoted(value("g_id")));
    if (value("g_name")) { lines.push("name: " + quoted(value("g_name"))); }
    lines.push("term: {start: " + value("g_start") + ", end: " + value("g_end") + "}");
    if (value("g_counterparty")) {
      lines.push("parties: {counterparty: " + quoted(value("g_counterparty")) + "}");
    }
    lines.push("periods: {kind: " + value("g_periods") + "}");
    lines.push("rebate:");
    lines.push("  form: " + value("g_form"));
    lines.push("  method: " + value("g_method"));
    lines.push("  basis: " + value("g_basis"));
    lines.push("  tiers:");
    var rows = bands.querySelectorAll("tr");
    for (var i = 0; i < rows.length; i++) {
      var cells = rows[i].querySelectorAll("input");
      var from = cells[0].value.trim(), to = cells[1].value.trim(), rate = cells[2].value.trim();
      if (!from && !rate) { continue; }
      lines.push("    - {from: " + (from || "0") + (to ? ", to: " + to : "") + ", rate: " + (rate || "0") + "}");
    }
    if (value("g_minimum")) { lines.push("minimum: " + value("g_minimum")); }
    if (value("g_cap")) { lines.push("cap: {per_period: " + value("g_cap") + "}"); }
    lines.push("settlement: {form: " + value("g_settlement") + "}");
    if (value("g_contract")) {
      lines.push("contract: {reference: " + quoted(value("g_contract")) + ", document_sha256: " +
                 quoted(value("g_sha256")) + "}");
    }
    terms.value = lines.join("\n") + "\n";
    terms.dispatchEvent(new Event("input", { bubbles: true }));  // live validation
  }

  form.addEventListener("input", write);
  document.getElementById("add-band").addEventListener("click", function () {
    var row = bands.querySelector("tr").cloneNode(true);
    row.querySelectorAll("input").forEach(function (input) { input.value = ""; });
    bands.appendChild(row);
  });
})();
