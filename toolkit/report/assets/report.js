/* dcase9 report: renders the listening page from the JSON embedded in index.html.
 *
 * User text (captions, ids, system names, paths) only ever reaches the page through textContent
 * and attribute values, never as HTML. The view's state (sort, page, filters) lives in the URL
 * fragment, e.g. index.html#sort=m.0.sdri&dir=desc&page=2, so a view can be bookmarked or shared. */
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("report-data").textContent);
  var rows = data.rows;
  var systems = data.systems;
  var metrics = data.metrics;
  var bins = data.bins;
  var hasSnr = bins.length > 0;
  var compareMetric = data.comparison.settings.metric;
  var PER_PAGE = [25, 50, 100, 200];

  var defaults = { sort: data.initial.sort, dir: data.initial.dir, page: 1, per: data.page_size, q: "", bin: "",
    rk: "", min: "", max: "", top: "", n: 20, diff: "" };
  var state = readHash();

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        if (key === "text") node.textContent = attrs[key];
        else if (key === "cls") node.className = attrs[key];
        else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), attrs[key]);
        else node.setAttribute(key, attrs[key]);
      });
    }
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function fmt(value, metric) {
    if (value === null || value === undefined) return "–";
    var decimals = data.decimals[metric];
    return value.toFixed(decimals === undefined ? 2 : decimals);
  }

  // Whether larger values are better for the metric a sort key shows (the registry's higher_is_better).
  function higherIsBetter(key) {
    var m = /^m\.(\d+)\.(\w+)$/.exec(key);
    var metric = key === "delta" ? compareMetric : m ? m[2] : null;
    return metric === null || data.higher[metric] !== false;
  }

  function signed(value, metric) {
    if (value === null || value === undefined) return "–";
    return (value > 0 ? "+" : "") + fmt(value, metric);
  }

  function metricIndex(metric) { return metrics.indexOf(metric); }

  function label(metric) { return data.labels[metric] || metric; }

  function readHash() {
    var s = Object.assign({}, defaults);
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    Object.keys(defaults).forEach(function (key) {
      if (params.has(key)) s[key] = params.get(key);
    });
    s.page = Math.max(1, parseInt(s.page, 10) || 1);
    s.per = s.per === "all" ? "all" : Math.max(1, parseInt(s.per, 10) || data.page_size);
    s.n = Math.max(1, parseInt(s.n, 10) || 20);
    if (s.dir !== "asc" && s.dir !== "desc") s.dir = "asc";
    if (!validKey(s.sort)) s.sort = defaults.sort;
    if (s.rk && !validKey(s.rk)) s.rk = "";
    if (s.diff && !parseDiff(s.diff)) s.diff = "";
    return s;
  }

  function writeHash() {
    var params = new URLSearchParams();
    Object.keys(defaults).forEach(function (key) {
      if (String(state[key]) !== String(defaults[key])) params.set(key, state[key]);
    });
    var hash = params.toString();
    try {
      history.replaceState(null, "", hash ? "#" + hash : window.location.pathname + window.location.search);
    } catch (e) { /* some browsers refuse replaceState on file:// pages; the view still works */ }
  }

  function parseDiff(text) {
    var parts = String(text).split("-").map(function (p) { return parseInt(p, 10); });
    if (parts.length !== 2 || !compareMetric) return null;
    if (parts.some(function (p) { return isNaN(p) || p < 0 || p >= systems.length; }) || parts[0] === parts[1]) return null;
    return parts;
  }

  function validKey(key) {
    if (key === "order" || key === "id" || key === "caption") return true;
    if (key === "snr") return hasSnr;
    if (key === "delta") return true;
    var m = /^m\.(\d+)\.(\w+)$/.exec(key || "");
    return !!m && +m[1] < systems.length && systems[+m[1]].metrics.indexOf(m[2]) >= 0;
  }

  function value(row, key) {
    if (key === "order") return row.i;
    if (key === "id") return row.id;
    if (key === "caption") return row.caption;
    if (key === "snr") return row.snr;
    if (key === "delta") {
      var pair = parseDiff(state.diff);
      if (!pair) return null;
      var k = metricIndex(compareMetric);
      var a = row.m[pair[0]][k], b = row.m[pair[1]][k];
      return a === null || b === null ? null : a - b;
    }
    var m = /^m\.(\d+)\.(\w+)$/.exec(key);
    return m ? row.m[+m[1]][metricIndex(m[2])] : null;
  }

  function keyLabel(key) {
    if (key === "order") return "#";
    if (key === "snr") return "input SNR";
    if (key === "delta") {
      var pair = parseDiff(state.diff);
      return pair ? "Δ " + label(compareMetric) + " (" + systems[pair[0]].name + " − " + systems[pair[1]].name + ")" : "Δ";
    }
    var m = /^m\.(\d+)\.(\w+)$/.exec(key);
    return m ? label(m[2]) + " (" + systems[+m[1]].name + ")" : key;
  }

  // Stable sort; missing values always last.
  function sortRows(list, key, dir) {
    var sign = dir === "desc" ? -1 : 1;
    var text = key === "id" || key === "caption";
    return list.map(function (row, i) { return [row, value(row, key), i]; }).sort(function (x, y) {
      var a = x[1], b = y[1];
      if (a === null || b === null) return (a === null) - (b === null) || x[2] - y[2];
      var c = text ? a.localeCompare(b) : a - b;
      return sign * c || x[2] - y[2];
    }).map(function (x) { return x[0]; });
  }

  function inBin(row, index) {
    var b = bins[index];
    var last = index === bins.length - 1;
    return row.snr !== null && row.snr >= b.low && (row.snr < b.high || (last && row.snr === b.high));
  }

  function visibleRows() {
    var list = rows;
    var q = state.q.trim().toLowerCase();
    if (q) list = list.filter(function (r) { return r.caption.toLowerCase().indexOf(q) >= 0 || r.id.toLowerCase().indexOf(q) >= 0; });
    if (state.bin !== "" && bins[+state.bin]) list = list.filter(function (r) { return inBin(r, +state.bin); });
    if (state.rk && (state.min !== "" || state.max !== "")) {
      var lo = state.min === "" ? -Infinity : parseFloat(state.min);
      var hi = state.max === "" ? Infinity : parseFloat(state.max);
      list = list.filter(function (r) { var v = value(r, state.rk); return v !== null && v >= lo && v <= hi; });
    }
    if (state.top && state.rk) {
      list = sortRows(list, state.rk, (state.top === "best") === higherIsBetter(state.rk) ? "desc" : "asc").slice(0, state.n);
    }
    return sortRows(list, state.sort, state.dir);
  }

  // ------------------------------------------------------------------ sections

  function renderSystems() {
    var section = document.getElementById("systems");
    var ds = data.dataset;
    document.getElementById("subtitle").textContent = ds.kind + " set, " + ds.clips + " of " + ds.mixtures +
      " mixtures, " + systems.length + " system" + (systems.length > 1 ? "s" : "") + " — " + ds.csv;
    var head = el("tr", null, [el("th", { text: "system" })].concat(metrics.map(function (m) {
      return el("th", { cls: "num", text: "mean " + label(m) });
    }), metrics.map(function (m) {
      return el("th", { cls: "num", text: "median " + label(m) });
    }), [el("th", { text: "score report / estimates" })]));
    var body = systems.map(function (s) {
      var cells = [el("td", null, [s.name, s.complete === false ? el("span", { cls: "warning small", text: " (incomplete report)" }) : null])];
      metrics.forEach(function (m) { cells.push(el("td", { cls: "num", text: fmt(s.mean[m], m) })); });
      metrics.forEach(function (m) { cells.push(el("td", { cls: "num", text: fmt(s.median[m], m) })); });
      cells.push(el("td", { cls: "mono" }, [s.report, el("br"), s.estimates]));
      return el("tr", null, cells);
    });
    section.replaceChildren(el("h2", { text: "Systems" }), el("table", null, [el("thead", null, [head]), el("tbody", null, body)]));
  }

  function ciText(p, metric) {
    return p.mean_diff === null ? "–" : "[" + signed(p.ci_low, metric) + ", " + signed(p.ci_high, metric) + "]";
  }

  function renderComparison() {
    var section = document.getElementById("comparison");
    var cmp = data.comparison;
    if (!cmp.pairs.length) {
      section.replaceChildren();
      return;
    }
    var st = cmp.settings;
    var unit = data.units[st.metric] ? " " + data.units[st.metric] : "";
    var up = data.higher[st.metric] !== false;
    var head = el("tr", null, ["A", "B", "mean A", "mean B", "mean A − B", Math.round(st.confidence * 100) + "% interval",
      "A better", "tie", "B better"].map(function (t, i) { return el("th", { cls: i > 1 ? "num" : "", text: t }); }));
    var body = [];
    var details = [];
    cmp.pairs.forEach(function (p) {
      var better = up ? p.ci_low > 0 : p.ci_high < 0, worse = up ? p.ci_high < 0 : p.ci_low > 0;
      var cls = better ? "num pos" : worse ? "num neg" : "num";
      body.push(el("tr", null, [el("td", { text: p.a }), el("td", { text: p.b }),
        el("td", { cls: "num", text: fmt(p.mean_a, st.metric) }), el("td", { cls: "num", text: fmt(p.mean_b, st.metric) }),
        el("td", { cls: cls, text: signed(p.mean_diff, st.metric) }), el("td", { cls: cls, text: ciText(p, st.metric) }),
        el("td", { cls: "num", text: String(p.wins) }), el("td", { cls: "num", text: String(p.ties) }),
        el("td", { cls: "num", text: String(p.losses) })]));
      if (p.by_input_snr) {
        var rowsBin = p.by_input_snr.map(function (b) {
          return el("tr", null, [el("td", { text: b.bin }), el("td", { cls: "num", text: String(b.n) }),
            el("td", { cls: "num", text: signed(b.mean_diff, st.metric) }), el("td", { cls: "num", text: ciText(b, st.metric) }),
            el("td", { cls: "num", text: b.wins + " / " + b.ties + " / " + b.losses })]);
        });
        details.push(el("details", null, [el("summary", { text: p.a + " − " + p.b + " by input SNR" }),
          el("table", { cls: "small" }, [el("thead", null, [el("tr", null, ["input SNR (dB)", "n", "mean A − B", "interval",
            "A better / tie / B better"].map(function (t) { return el("th", { text: t }); }))]), el("tbody", null, rowsBin)])]));
      }
    });
    var note = "Per clip A − B in " + st.label + unit + "; interval: " + st.interval + " (" + st.resamples +
      " resamples, seed " + st.seed + "); a tie is |A − B| ≤ " + st.tie_margin + unit + ". Also in comparison.json.";
    var parts = [el("h2", { text: "Paired comparison (" + st.label + ")" }), el("p", { cls: "note", text: note }),
      el("table", null, [el("thead", null, [head]), el("tbody", null, body)])].concat(details);
    if (data.comparison_plot) {
      parts.push(el("details", null, [el("summary", { text: "plot (comparison.png)" }),
        el("img", { cls: "plot", src: data.comparison_plot, alt: "paired differences by input SNR" })]));
    }
    section.replaceChildren.apply(section, parts);
  }

  // ------------------------------------------------------------------ clip table

  var controls = {};

  function metricKeys() {
    var keys = [];
    systems.forEach(function (s, k) { s.metrics.forEach(function (m) { keys.push("m." + k + "." + m); }); });
    if (parseDiff(state.diff)) keys.push("delta");
    return keys;
  }

  function option(valueText, text, selected) {
    var o = el("option", { value: valueText, text: text });
    if (selected) o.selected = true;
    return o;
  }

  function update(changes, keepPage) {
    Object.assign(state, changes);
    if (!keepPage) state.page = 1;
    writeHash();
    renderTable();
  }

  function buildControls() {
    var bar = el("div", { cls: "controls" });
    controls.q = el("input", { type: "search", placeholder: "caption or id", value: state.q,
      oninput: function (e) { update({ q: e.target.value }); } });
    bar.appendChild(el("label", null, ["Find", controls.q]));
    if (hasSnr) {
      controls.bin = el("select", { onchange: function (e) { update({ bin: e.target.value }); } },
        [option("", "all", state.bin === "")].concat(bins.map(function (b, i) { return option(String(i), b.label + " dB", String(i) === state.bin); })));
      bar.appendChild(el("label", null, ["input SNR", controls.bin]));
    }
    controls.rk = el("select", { onchange: function (e) { update({ rk: e.target.value }); } });
    controls.min = el("input", { type: "number", step: "any", placeholder: "min", value: state.min,
      oninput: function (e) { update({ min: e.target.value }); } });
    controls.max = el("input", { type: "number", step: "any", placeholder: "max", value: state.max,
      oninput: function (e) { update({ max: e.target.value }); } });
    bar.appendChild(el("label", null, ["metric", controls.rk, "from", controls.min, "to", controls.max]));
    controls.n = el("input", { type: "number", min: "1", value: String(state.n),
      onchange: function (e) { update({ n: Math.max(1, parseInt(e.target.value, 10) || 20) }); } });
    var worst = el("button", { type: "button", text: "worst N", onclick: function () { jump("worst"); } });
    var best = el("button", { type: "button", text: "best N", onclick: function () { jump("best"); } });
    bar.appendChild(el("label", null, [worst, best, "N", controls.n]));
    if (systems.length > 1 && compareMetric) {
      var opts = [option("", "no Δ column", !state.diff)];
      systems.forEach(function (a, i) {
        systems.forEach(function (b, j) {
          if (i !== j) opts.push(option(i + "-" + j, "Δ " + label(compareMetric) + ": " + a.name + " − " + b.name, state.diff === i + "-" + j));
        });
      });
      controls.diff = el("select", { onchange: function (e) {
        var changes = { diff: e.target.value };
        if (!e.target.value && (state.sort === "delta" || state.rk === "delta")) { changes.sort = defaults.sort; changes.rk = ""; }
        update(changes);
      } }, opts);
      bar.appendChild(el("label", null, [controls.diff]));
    }
    bar.appendChild(el("button", { type: "button", text: "reset", onclick: function () {
      state = Object.assign({}, defaults);
      writeHash();
      rebuild();
    } }));
    return bar;
  }

  function fillMetricSelect() {
    var keys = metricKeys();
    if (state.rk && keys.indexOf(state.rk) < 0) state.rk = "";
    controls.rk.replaceChildren.apply(controls.rk, [option("", "—", !state.rk)].concat(keys.map(function (k) {
      return option(k, keyLabel(k), k === state.rk);
    })));
  }

  function jump(which) {
    var key = state.rk || (validKey(defaults.sort) && defaults.sort !== "order" ? defaults.sort : metricKeys()[0]);
    if (!key) return;
    update({ top: which, rk: key, sort: key, dir: (which === "best") === higherIsBetter(key) ? "desc" : "asc" });
  }

  function headerCell(text, key, attrs) {
    var th = el("th", Object.assign({ cls: "sortable" + (key === "caption" || key === "id" ? "" : " num"), title: "sort by " + keyLabel(key),
      "data-key": key, onclick: function () {
        update({ sort: key, dir: state.sort === key && state.dir === "asc" ? "desc" : "asc" }, false);
      } }, attrs || {}), [text]);
    if (state.sort === key) th.appendChild(el("span", { cls: "arrow", text: state.dir === "asc" ? " ▲" : " ▼" }));
    return th;
  }

  function tableHead() {
    var delta = parseDiff(state.diff);
    var top = [headerCell("#", "order", { rowspan: "2" }), headerCell("mixture id", "id", { rowspan: "2" }),
      headerCell("caption", "caption", { rowspan: "2" })];
    if (hasSnr) top.push(headerCell("input SNR", "snr", { rowspan: "2" }));
    var second = [];
    systems.forEach(function (s, k) {
      top.push(el("th", { colspan: String(s.metrics.length), text: s.name }));
      s.metrics.forEach(function (m) { second.push(headerCell(label(m), "m." + k + "." + m)); });
    });
    if (delta) top.push(headerCell("Δ " + label(compareMetric), "delta", { rowspan: "2", title: keyLabel("delta") }));
    return el("thead", null, [el("tr", null, top), el("tr", null, second)]);
  }

  // `key`: mixture, reference or system-N (also the spectrogram folder); `name`: what the user reads.
  function player(key, name, src, image) {
    return el("div", { cls: "player" }, [el("div", { cls: "label", title: name, text: name }),
      el("audio", { controls: "", preload: "none", src: src, "data-player": key }),
      image ? el("img", { src: image, alt: "spectrogram: " + name, loading: "lazy" }) : null]);
  }

  function clipRows(row, columns) {
    var delta = parseDiff(state.diff);
    var cells = [el("td", { cls: "num", text: String(row.i + 1) }), el("td", { cls: "mono", text: row.id }),
      el("td", { cls: "caption", text: row.caption })];
    if (hasSnr) cells.push(el("td", { cls: "num", text: row.snr === null ? "–" : String(row.snr) }));
    systems.forEach(function (s, k) {
      s.metrics.forEach(function (m) { cells.push(el("td", { cls: "num", text: fmt(row.m[k][metricIndex(m)], m) })); });
    });
    if (delta) {
      var d = value(row, "delta");
      cells.push(el("td", { cls: "num " + (d > 0 ? "pos" : d < 0 ? "neg" : ""), text: signed(d, compareMetric) }));
    }
    var spec = function (player) { return row.spec ? data.spectrograms.base + player + "/" + row.f + ".png" : null; };
    var players = [player("mixture", "mixture (input)", data.audio.mixture + (row.mix || row.f + ".wav"), spec("mixture"))];
    if (data.audio.reference) {
      players.push(player("reference", "reference (target)", data.audio.reference + (row.ref || row.f + ".wav"),
                          spec("reference")));
    }
    systems.forEach(function (s, k) {
      var key = "system-" + (k + 1);
      players.push(player(key, s.name, s.base + row.f + ".wav", spec(key)));
    });
    return [el("tr", { cls: "clip", "data-id": row.id }, cells),
      el("tr", { cls: "listen" }, [el("td", { colspan: String(columns) }, [el("div", { cls: "players" }, players)])])];
  }

  function pager(total, pages) {
    var go = function (page) { return function () { update({ page: page }, true); }; };
    var per = el("select", { onchange: function (e) { update({ per: e.target.value === "all" ? "all" : +e.target.value }); } },
      PER_PAGE.map(function (n) { return option(String(n), n + " per page", String(state.per) === String(n)); })
        .concat([option("all", "all", state.per === "all")]));
    return el("div", { cls: "pager" }, [
      el("button", { type: "button", text: "«", title: "first page", onclick: go(1) }),
      el("button", { type: "button", text: "‹", title: "previous page", onclick: go(Math.max(1, state.page - 1)) }),
      el("span", { text: "page " + state.page + " of " + pages }),
      el("button", { type: "button", text: "›", title: "next page", onclick: go(Math.min(pages, state.page + 1)) }),
      el("button", { type: "button", text: "»", title: "last page", onclick: go(pages) }), per]);
  }

  var tableHost;

  function renderTable() {
    fillMetricSelect();
    var list = visibleRows();
    var per = state.per === "all" ? Math.max(1, list.length) : state.per;
    var pages = Math.max(1, Math.ceil(list.length / per));
    state.page = Math.min(state.page, pages);
    var start = (state.page - 1) * per;
    var shown = list.slice(start, start + per);
    var columns = 3 + (hasSnr ? 1 : 0) + systems.reduce(function (n, s) { return n + s.metrics.length; }, 0) +
      (parseDiff(state.diff) ? 1 : 0);
    var body = el("tbody");
    shown.forEach(function (row) { clipRows(row, columns).forEach(function (tr) { body.appendChild(tr); }); });
    var status = "showing " + (list.length ? start + 1 : 0) + "–" + (start + shown.length) + " of " + list.length +
      (list.length !== rows.length ? " (of " + rows.length + ")" : "") + " mixtures, sorted by " + keyLabel(state.sort) +
      (state.dir === "asc" ? " ascending" : " descending");
    var chips = [];
    if (state.top && state.rk) {
      chips.push(el("span", { cls: "chip" }, [state.top + " " + state.n + " by " + keyLabel(state.rk) + " ",
        el("button", { type: "button", text: "×", title: "show all", onclick: function () { update({ top: "" }); } })]));
    }
    var spec = data.spectrograms;
    var specNote = spec.limit > 0 ? "Spectrograms for the first " + spec.made + " mixtures in the initial order (" +
      keyLabel(data.initial.sort) + ", ascending)" + (spec.stopped_by_time ? ", stopped by the time budget" : "") + "." : "";
    tableHost.replaceChildren(el("p", { cls: "note", id: "status" }, [status, " "].concat(chips)),
      pager(list.length, pages), el("table", { cls: "clips", id: "clip-table" }, [tableHead(), body]),
      pager(list.length, pages), el("p", { cls: "note", text: specNote }));
  }

  function rebuild() {
    var section = document.getElementById("clips");
    tableHost = el("div");
    section.replaceChildren(el("h2", { text: "Mixtures" }), buildControls(), tableHost);
    renderTable();
  }

  renderSystems();
  renderComparison();
  rebuild();
  window.addEventListener("hashchange", function () {
    state = readHash();
    rebuild();
  });
  document.documentElement.setAttribute("data-ready", "1");
})();
