/* promoflow form page: show/hide fields by their visible_if condition, mark
 * required_if fields, add and remove sub-table rows.
 * Conditions are JSON data (the definition language): evaluated here by a
 * small interpreter, never by eval. The server evaluates them again. */
(function () {
  "use strict";

  var DURATION_OPS = { older_than: 1, within: 1, within_next: 1 };

  function isObject(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }
  function isEmpty(v) { return v === null || v === undefined || v === "" || (Array.isArray(v) && v.length === 0); }

  function same(a, b) {
    if (typeof a === "number" || typeof b === "number") {
      var x = Number(a), y = Number(b);
      return !isNaN(x) && !isNaN(y) && x === y;
    }
    return a === b;
  }

  function order(a, b) {            // <0, 0, >0, or null when not comparable
    if (typeof b === "number") {
      var x = Number(a);
      if (isNaN(x)) return null;
      return x - b;
    }
    if (typeof a !== "string" || typeof b !== "string") return null;
    return a < b ? -1 : (a > b ? 1 : 0);
  }

  function moment(v) {
    var d = new Date(typeof v === "string" && v.length === 10 ? v + "T00:00:00" : v);
    return isNaN(d.getTime()) ? null : d.getTime();
  }

  function compare(value, op, operand, now) {
    if (op === "is_empty") return isEmpty(value) === (operand !== false);
    if (isEmpty(value) && op !== "contains" && op !== "not_contains") {
      return op === "ne" || op === "not_in";
    }
    switch (op) {
      case "eq": return same(value, operand);
      case "ne": return !same(value, operand);
      case "gt": var c1 = order(value, operand); return c1 !== null && c1 > 0;
      case "gte": var c2 = order(value, operand); return c2 !== null && c2 >= 0;
      case "lt": var c3 = order(value, operand); return c3 !== null && c3 < 0;
      case "lte": var c4 = order(value, operand); return c4 !== null && c4 <= 0;
      case "between":
        if (!Array.isArray(operand) || operand.length !== 2) return false;
        var lo = order(value, operand[0]), hi = order(value, operand[1]);
        return lo !== null && hi !== null && lo >= 0 && hi <= 0;
      case "in": return Array.isArray(operand) && operand.some(function (o) { return same(value, o); });
      case "not_in": return !(Array.isArray(operand) && operand.some(function (o) { return same(value, o); }));
      case "contains": return Array.isArray(value) && value.some(function (v) { return same(v, operand); });
      case "not_contains": return !(Array.isArray(value) && value.some(function (v) { return same(v, operand); }));
    }
    if (DURATION_OPS[op]) {
      var t = moment(value), ms = Number(operand) * 1000;
      if (t === null || isNaN(ms)) return false;
      if (op === "older_than") return t < now - ms;
      if (op === "within") return t >= now - ms && t <= now;
      return t >= now && t <= now + ms;
    }
    return false;
  }

  function holds(cond, values, now) {
    if (!isObject(cond)) return false;
    var keys = Object.keys(cond);
    if (keys.length === 0) return false;
    return keys.every(function (key) {
      var v = cond[key];
      if (key === "all") return Array.isArray(v) && v.every(function (c) { return holds(c, values, now); });
      if (key === "any") return Array.isArray(v) && v.some(function (c) { return holds(c, values, now); });
      if (key === "not") return !holds(v, values, now);
      var ops = isObject(v) ? v : (Array.isArray(v) ? { "in": v } : { eq: v });
      return Object.keys(ops).every(function (op) { return compare(values[key], op, ops[op], now); });
    });
  }

  function fieldValue(box) {
    var type = box.getAttribute("data-type");
    var inputs = box.querySelectorAll("input, select, textarea");
    if (type === "checkbox") return inputs.length > 0 && inputs[0].checked;
    if (type === "multiselect") {
      var out = [];
      inputs.forEach(function (i) { if (i.checked) out.push(i.value); });
      return out;
    }
    if (!inputs.length) return null;
    if (inputs[0].type === "radio") {   // a scale (NPS 0-10): the ticked one
      var ticked = Array.prototype.filter.call(inputs, function (i) { return i.checked; });
      inputs = ticked.length ? ticked : [{ value: "" }];
    }
    var raw = inputs[0].value;
    if (raw === "") return null;
    if (type === "integer" || type === "number" || type === "money" || type === "customer") {
      var n = Number(raw);
      return isNaN(n) ? raw : n;
    }
    return raw;
  }

  function ownBoxes(scope, isRow) {   // the fields of a form or of one row, not of nested rows
    return Array.prototype.filter.call(scope.querySelectorAll("[data-key]"), function (el) {
      var row = el.parentElement && el.parentElement.closest("[data-row]");
      return isRow ? row === scope : row === null;
    });
  }

  function refreshScope(scope, isRow, now) {
    var boxes = ownBoxes(scope, isRow), values = {};
    boxes.forEach(function (b) { if (b.getAttribute("data-type") !== "table") values[b.getAttribute("data-key")] = fieldValue(b); });
    boxes.forEach(function (b) {
      var vis = b.getAttribute("data-visible-if");
      if (vis) {
        var show = false;
        try { show = holds(JSON.parse(vis), values, now); } catch (e) { show = true; }
        b.hidden = !show;
        b.querySelectorAll("input, select, textarea").forEach(function (i) {
          if (i.hasAttribute("data-locked")) return;
          i.disabled = !show;
        });
      }
      var req = b.getAttribute("data-required-if");
      if (req) {
        var mark = b.querySelector(".req");
        var on = false;
        try { on = holds(JSON.parse(req), values, now); } catch (e) { on = false; }
        if (mark) mark.classList.toggle("on", on);
      }
    });
  }

  function refresh(form) {
    var now = Date.now();
    refreshScope(form, false, now);
    form.querySelectorAll("[data-row]").forEach(function (row) { refreshScope(row, true, now); });
  }

  function renumber(table) {
    var key = table.getAttribute("data-key");
    var pattern = new RegExp("^" + key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "-\\d+-");
    table.querySelectorAll("[data-row]").forEach(function (row, index) {
      row.querySelectorAll("[name], [id], label[for]").forEach(function (el) {
        ["name", "id", "for"].forEach(function (attr) {
          var v = el.getAttribute(attr);
          if (v && pattern.test(v)) el.setAttribute(attr, v.replace(pattern, key + "-" + index + "-"));
        });
      });
    });
  }

  function addRow(table) {
    var rows = table.querySelector(".rows"), all = rows.querySelectorAll("[data-row]");
    var max = Number(table.getAttribute("data-max-rows")) || 1000;
    if (!all.length || all.length >= max) return;
    var copy = all[all.length - 1].cloneNode(true);
    copy.querySelectorAll("input, select, textarea").forEach(function (i) {
      if (i.type === "checkbox" || i.type === "radio") i.checked = false;
      else if (i.tagName === "SELECT") i.selectedIndex = 0;
      else i.value = "";
      i.removeAttribute("aria-invalid");
    });
    copy.querySelectorAll(".error").forEach(function (e) { e.remove(); });
    copy.querySelectorAll(".has-error").forEach(function (e) { e.classList.remove("has-error"); });
    rows.appendChild(copy);
    renumber(table);
  }

  function removeRow(table, row) {
    var rows = table.querySelectorAll("[data-row]");
    if (rows.length <= 1) {                       // keep one (blank) row to type into
      row.querySelectorAll("input, select, textarea").forEach(function (i) {
        if (i.type === "checkbox") i.checked = false; else if (i.tagName === "SELECT") i.selectedIndex = 0; else i.value = "";
      });
    } else {
      row.remove();
    }
    renumber(table);
  }

  function init(form) {
    form.querySelectorAll("input:disabled, select:disabled, textarea:disabled").forEach(function (i) {
      i.setAttribute("data-locked", "");          // read-only fields stay disabled
    });
    form.addEventListener("input", function () { refresh(form); });
    form.addEventListener("change", function () { refresh(form); });
    form.addEventListener("click", function (ev) {
      var target = ev.target;
      if (!(target instanceof Element)) return;
      var table = target.closest("[data-type=table]");
      if (target.hasAttribute("data-add-row") && table) { ev.preventDefault(); addRow(table); refresh(form); }
      if (target.hasAttribute("data-remove-row") && table) {
        ev.preventDefault(); removeRow(table, target.closest("[data-row]")); refresh(form);
      }
    });
    refresh(form);
  }

  window.promoflowCondition = holds;   // for tests and the designer
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.record-form").forEach(init);
  });
})();
