/* promoflow task page: 退回 and 驳回 need a reason, and 驳回 asks first.
 * The server refuses a reject or return without a comment either way (422);
 * this only saves a round trip and a mistaken click. */
(function () {
  "use strict";

  function init() {
    var form = document.querySelector("form.task-form");
    if (!form) return;
    var comment = form.querySelector("#comment");
    form.addEventListener("submit", function (ev) {
      var button = ev.submitter;
      if (!button) return;
      var needs = button.getAttribute("data-needs-reason");
      if (needs && comment && !comment.value.trim()) {
        ev.preventDefault();
        comment.setCustomValidity(needs);
        comment.reportValidity();
        comment.addEventListener("input", function clear() {
          comment.setCustomValidity("");
          comment.removeEventListener("input", clear);
        });
        return;
      }
      var question = button.getAttribute("data-confirm");
      if (question && !window.confirm(question)) ev.preventDefault();
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
