// The live view: server-sent events from /live/events, each a finding stored or raised since the page opened.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var list = document.getElementById("live-new");
  var status = document.getElementById("live-status");
  var src = new EventSource("/live/events");
  src.onopen = function () { status.textContent = "connected: new findings appear here as watch raises them"; };
  src.onerror = function () { status.textContent = "disconnected: retrying…"; };
  src.addEventListener("finding", function (ev) {
    var f = JSON.parse(ev.data);
    var li = document.createElement("li");
    li.className = "sev-" + f.severity;
    var a = document.createElement("a");
    a.href = "/findings/" + encodeURIComponent(f.id);
    a.textContent = f.id;  // textContent, never innerHTML: names come from the traffic
    li.appendChild(a);
    var dest = (f.external_names[0] || f.external_hosts[0] || "-");
    li.appendChild(document.createTextNode(" " + f.severity + " " + Math.round(f.score) + " " + f.detection +
      " " + f.internal_hosts.join(", ") + " → " + dest + ": " + f.explanation));
    list.insertBefore(li, list.firstChild);
  });
});
