/* Draws the dashboard's charts (issue 14) with the vendored ECharts.
 *
 * Each <figure class="chart"> holds a JSON blob (<script type="application/json"
 * class="chart-data">) written by web/charts.py from the same rows as the HTML
 * table beside it, so the chart never shows a number the table does not. No
 * network: echarts.min.js is served from /static/vendor/echarts. Tooltips use
 * ECharts' rich-text mode because the page's CSP forbids inline styles.
 */
(function () {
  "use strict";

  function percentKind(series) {
    return series.length > 0 && series.every(function (s) { return s.kind === "percent"; });
  }

  function fmt(value, kind) {
    if (value === null || value === undefined) { return "—"; }
    if (kind === "percent") { return (value * 100).toFixed(1) + "%"; }
    if (kind === "money" || kind === "number") { return Number(value).toFixed(2); }
    return String(value);
  }

  function cartesian(blob, type) {
    var pct = percentKind(blob.series);
    return {
      tooltip: {trigger: "axis", renderMode: "richText"},
      legend: {data: blob.series.map(function (s) { return s.name; }), top: 0},
      grid: {left: 56, right: 56, top: 36, bottom: 32},
      xAxis: {type: "category", data: blob.categories},
      yAxis: blob.options.dual_axis ? [{type: "value"}, {type: "value"}] : {
        type: "value", axisLabel: pct ? {formatter: function (v) { return (v * 100).toFixed(0) + "%"; }} : {}
      },
      series: blob.series.map(function (s, i) {
        return {name: s.name, type: type, data: s.data, connectNulls: false,
                yAxisIndex: blob.options.dual_axis && i === blob.series.length - 1 ? 1 : 0,
                stack: blob.options.stack ? "total" : undefined,
                label: {show: blob.categories.length <= 8, position: "top",
                        formatter: function (p) { return fmt(p.value, s.kind); }}};
      })
    };
  }

  function funnel(blob) {
    var s = blob.series[0];
    return {
      tooltip: {trigger: "item", renderMode: "richText"},
      series: [{type: "funnel", sort: "none", left: "10%", width: "80%", minSize: "4%",
                label: {show: true, position: "inside", formatter: "{b}: {c}"},
                data: blob.categories.map(function (c, i) { return {name: c, value: s.data[i]}; })}]
    };
  }

  function pie(blob) {
    var s = blob.series[0];
    return {
      tooltip: {trigger: "item", renderMode: "richText"},
      legend: {top: 0},
      series: [{type: "pie", radius: ["35%", "65%"], label: {formatter: "{b}: {c} ({d}%)"},
                data: blob.categories.map(function (c, i) { return {name: c, value: s.data[i]}; })}]
    };
  }

  function heatmap(blob) {
    var points = [], max = 0;
    blob.series.forEach(function (s, x) {
      s.data.forEach(function (v, y) {
        if (v !== null && v !== undefined) { points.push([x, y, v]); max = Math.max(max, v); }
      });
    });
    var pct = percentKind(blob.series);
    return {
      tooltip: {renderMode: "richText"},
      grid: {left: 96, right: 24, top: 16, bottom: 64},
      xAxis: {type: "category", data: blob.series.map(function (s) { return s.name; }), splitArea: {show: true}},
      yAxis: {type: "category", data: blob.categories, inverse: true, splitArea: {show: true}},
      visualMap: {min: 0, max: max || 1, calculable: false, orient: "horizontal", left: "center", bottom: 0,
                  formatter: function (v) { return fmt(v, pct ? "percent" : "number"); }},
      series: [{type: "heatmap", data: points,
                label: {show: true, formatter: function (p) { return fmt(p.value[2], pct ? "percent" : "number"); }}}]
    };
  }

  function sparkline(blob) {
    return {
      grid: {left: 2, right: 2, top: 2, bottom: 2},
      xAxis: {type: "category", data: blob.categories, show: false},
      yAxis: {type: "value", show: false},
      series: blob.series.map(function (s) {
        return {type: "line", data: s.data, symbol: "none", lineStyle: {width: 1.5}, areaStyle: {opacity: 0.15}};
      })
    };
  }

  var BUILDERS = {line: function (b) { return cartesian(b, "line"); },
                  bar: function (b) { return cartesian(b, "bar"); },
                  funnel: funnel, pie: pie, heatmap: heatmap, sparkline: sparkline};

  function draw(figure) {
    var holder = figure.querySelector(".chart-data");
    var canvas = figure.querySelector(".chart-canvas");
    if (!holder || !canvas || typeof echarts === "undefined") { return; }
    var blob;
    try { blob = JSON.parse(holder.textContent); } catch (e) { return; }
    var build = BUILDERS[blob.kind];
    if (!build) { return; }
    var chart = echarts.init(canvas, null, {renderer: "canvas", locale: blob.locale === "en" ? "EN" : "ZH"});
    var option = build(blob);
    option.animation = false;  /* the numbers are there at once (and for the browser test) */
    option.aria = {enabled: true};
    chart.setOption(option);
    figure.setAttribute("data-drawn", "1");
    window.addEventListener("resize", function () { chart.resize(); });
  }

  function drawAll() {
    Array.prototype.forEach.call(document.querySelectorAll("figure.chart"), draw);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
}());
