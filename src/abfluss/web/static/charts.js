// Draws the plotly figures the server rendered to JSON (data-figure attribute) with the local plotly.js.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("div.chart[data-figure]").forEach(function (el) {
    var fig = JSON.parse(el.getAttribute("data-figure"));
    window.Plotly.newPlot(el, fig.data, fig.layout, {displaylogo: false, responsive: true});
  });
});
