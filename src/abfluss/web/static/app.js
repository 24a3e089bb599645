// abfluss console: small helpers, no inline script anywhere (the CSP forbids it).
"use strict";
document.addEventListener("submit", function (ev) {
  // a report takes a while: say so and keep the button from sending it twice
  var b = ev.target.querySelector("button[type=submit]");
  if (b && ev.target.method === "post" && ev.target.action.endsWith("/reports")) {
    b.disabled = true;
    b.textContent = "generating…";
  }
});
