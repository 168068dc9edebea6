/* The dashboard's plots: stable and canary side by side over the step, one uPlot chart per panel and
 * segment (or cohort), from the JSON of /api/rollouts/NAME/series (controller/dashboard/series.py says
 * its shape). Plain ES2017, no build; loaded with `defer` after uplot.iife.min.js.
 *
 * Safe under the page's Content-Security-Policy `default-src 'self'`: no eval, no inline style or
 * script, no HTML strings: every element is made with createElement and every text set as textContent.
 *
 * What it draws in `section#plots[data-src]` (class names for the page's stylesheet):
 *   p.plots-range        the range, step and rate window
 *   ul.plots-errors      the answer's `errors`, one li each (or why the JSON could not be read)
 *   div.plot-panel       one per panel, `data-metric` its metric: h3 (title and unit), p.plot-note,
 *                        p.plot-nodata "no data" when it has no series, else one div.plot-chart per
 *                        segment (`data-segment`), each a uPlot chart titled with the segment
 * and sets the section's `data-state` to `drawn`, or `failed` when the JSON could not be had.
 */
(function () {
  "use strict";

  var COLOURS = { stable: "#1f6fd1", canary: "#e8590c" };
  var HEIGHT = 220;

  function make(tag, className, text) {
    var el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function number(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    var abs = Math.abs(v);
    if (abs !== 0 && (abs < 0.001 || abs >= 1e6)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  // A value with its unit; on an axis (`short`) a long unit (tokens) is left to the panel's title.
  function formatter(unit, short) {
    return function (v) {
      var text = number(v);
      if (text === "–") return text;
      if (unit === "$") return "$" + text;
      if (unit === "%") return text + "%";
      if (unit === "s") return text + " s";
      if (unit && !short) return text + " " + unit;
      return text;
    };
  }

  function when(epoch) {
    return new Date(epoch * 1000).toISOString().replace(".000Z", "Z");
  }

  function bySegment(series) {
    var order = [];
    var groups = {};
    series.forEach(function (s) {
      if (!(s.segment in groups)) {
        groups[s.segment] = [];
        order.push(s.segment);
      }
      groups[s.segment].push(s);
    });
    return order.map(function (segment) {
      return { segment: segment, series: groups[segment] };
    });
  }

  function chart(target, panel, group, width) {
    var fmt = formatter(panel.unit, false);
    var tick = formatter(panel.unit, true);
    var xs = [];
    var ys = [];
    var config = [{}];
    group.series.forEach(function (s, i) {
      if (i === 0) {
        xs = s.points.map(function (p) {
          return p[0];
        });
      }
      ys.push(
        s.points.map(function (p) {
          return p[1];
        })
      );
      config.push({
        label: s.variant,
        stroke: COLOURS[s.variant] || "#555",
        width: 2,
        dash: s.variant === "canary" ? [6, 3] : undefined,
        spanGaps: false,
        value: function (u, v) {
          return fmt(v);
        },
      });
    });
    var options = {
      title: group.segment || undefined,
      width: width,
      height: HEIGHT,
      scales: { x: { time: true } },
      series: config,
      axes: [
        {},
        {
          size: 70,
          values: function (u, splits) {
            return splits.map(tick);
          },
        },
      ],
    };
    return new window.uPlot(options, [xs].concat(ys), target);
  }

  function render(section, answer) {
    section.replaceChildren();
    section.appendChild(
      make(
        "p",
        "plots-range",
        "From " +
          when(answer.start) +
          " to " +
          when(answer.end) +
          ", a point every " +
          answer.step +
          " s, each over the " +
          answer.window +
          " before it."
      )
    );
    if (answer.errors && answer.errors.length) {
      var list = make("ul", "plots-errors");
      answer.errors.forEach(function (e) {
        list.appendChild(make("li", "", String(e)));
      });
      section.appendChild(list);
    }
    var width = Math.max(320, Math.min(900, (section.clientWidth || 640) - 16));
    answer.panels.forEach(function (panel) {
      var box = make("div", "plot-panel");
      box.dataset.metric = panel.metric;
      box.appendChild(make("h3", "", panel.title + (panel.unit ? " (" + panel.unit + ")" : "")));
      if (panel.note) box.appendChild(make("p", "plot-note", panel.note));
      section.appendChild(box);
      if (!panel.series.length) {
        box.appendChild(make("p", "plot-nodata", "no data"));
        return;
      }
      bySegment(panel.series).forEach(function (group) {
        var holder = make("div", "plot-chart");
        holder.dataset.segment = group.segment;
        box.appendChild(holder);
        chart(holder, panel, group, width);
      });
    });
  }

  function failed(section, why) {
    section.replaceChildren();
    var list = make("ul", "plots-errors");
    list.appendChild(make("li", "", "The plots could not be loaded: " + why));
    section.appendChild(list);
    section.dataset.state = "failed";
  }

  async function load(section) {
    var response;
    try {
      response = await fetch(section.dataset.src, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    } catch (e) {
      failed(section, String(e));
      return;
    }
    if (!response.ok) {
      failed(section, "HTTP " + response.status);
      return;
    }
    var answer;
    try {
      answer = await response.json();
    } catch (e) {
      failed(section, "the answer is not JSON");
      return;
    }
    if (!answer || !Array.isArray(answer.panels)) {
      failed(section, "the answer has no panels");
      return;
    }
    if (typeof window.uPlot !== "function") {
      failed(section, "uPlot is not loaded");
      return;
    }
    render(section, answer);
    section.dataset.state = "drawn";
  }

  function start() {
    var section = document.querySelector("section#plots[data-src]");
    if (section) load(section);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
