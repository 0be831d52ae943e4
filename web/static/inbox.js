/* promoflow inbox, 批量审批: the "select all" box, the count of ticked tasks
 * and a confirmation before rejecting. The form works without this script
 * (plain checkboxes posted with the CSRF token); it only adds convenience. */
(function () {
  "use strict";

  function init() {
    var form = document.getElementById("bulk-form");
    var all = document.getElementById("bulk-select-all");
    if (!form || !all) return;
    var wrap = form.querySelector("[data-bulk-all]");
    var count = form.querySelector("[data-bulk-count]");

    function boxes() {
      return Array.prototype.filter.call(document.querySelectorAll('input[type="checkbox"][name="task"]'),
        function (box) { return box.form === form; });
    }
    function ticked() { return boxes().filter(function (box) { return box.checked; }).length; }
    function sync() {
      var n = ticked(), total = boxes().length;
      all.checked = total > 0 && n === total;
      all.indeterminate = n > 0 && n < total;
      if (count) count.textContent = (count.getAttribute("data-template") || "{n}").replace("{n}", String(n));
    }

    if (wrap) wrap.hidden = false;
    all.addEventListener("change", function () {
      boxes().forEach(function (box) { box.checked = all.checked; });
      sync();
    });
    document.addEventListener("change", function (ev) {
      var el = ev.target;
      if (el && el.name === "task" && el.form === form) sync();
    });
    form.addEventListener("submit", function (ev) {
      var button = ev.submitter;
      var question = button && button.getAttribute("data-confirm");
      if (question && ticked() > 0 && !window.confirm(question.replace("{n}", String(ticked())))) {
        ev.preventDefault();
      }
    });
    sync();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
