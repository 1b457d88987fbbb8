/// The one stylesheet of every page (the sign-on pages and the admin console) and the console's
/// small script. Served from this host, so the Content-Security-Policy allows no inline style or
/// script at all.
enum Assets {
    static let stylesheetPath = "/assets/rekey.css"
    static let scriptPath = "/assets/console.js"
    static let iconPath = "/assets/icon.svg"

    /// The tab icon: the brand's first letter on its colour.
    static func icon(_ brand: Brand) -> String {
        let letter = HTML.escape(String(brand.name.prefix(1)).uppercased())
        return """
            <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="\(brand.color)"/>\
            <text x="16" y="22" font-family="system-ui, sans-serif" font-size="18" font-weight="700" fill="#fff" text-anchor="middle">\(letter)</text></svg>
            """
    }

    /// The stylesheet with the brand's accent colour.
    static func stylesheet(_ brand: Brand) -> String {
        ":root { --accent: \(brand.color); }\n" + Self.baseStyles
    }

    private static let baseStyles = """
        :root {
          --ink: #1d2430; --muted: #5b6472; --line: #dfe3ea; --wash: #f5f7fa; --paper: #fff;
          --good: #1e7a46; --good-wash: #e6f4ec; --warn: #8a5a00; --warn-wash: #fdf3dc;
          --bad: #b3261e; --bad-wash: #fbe9e7; --info-wash: #eaf0fb;
          --radius: 6px; --focus: 0 0 0 3px color-mix(in srgb, var(--accent) 45%, transparent);
        }
        * { box-sizing: border-box; }
        html { -webkit-text-size-adjust: 100%; }
        body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--wash); }
        a { color: var(--accent); text-underline-offset: 2px; }
        a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, summary:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; box-shadow: var(--focus); }
        h1 { font-size: 1.5rem; line-height: 1.25; margin: 0 0 1rem; }
        h2 { font-size: 1.15rem; margin: 2rem 0 .75rem; }
        h3 { font-size: 1rem; margin: 1.25rem 0 .5rem; }
        p { margin: .5rem 0 1rem; }
        code, pre, .mono { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: .875rem; }
        pre { white-space: pre-wrap; word-break: break-word; background: var(--wash); border: 1px solid var(--line); border-radius: var(--radius); padding: .75rem; }
        .visually-hidden { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
        .skip { position: absolute; left: -999px; top: .5rem; background: var(--paper); padding: .5rem 1rem; z-index: 10; }
        .skip:focus { left: .5rem; }

        /* Forms */
        label { display: block; font-weight: 600; margin: 1rem 0 .25rem; }
        input[type=email], input[type=password], input[type=text], input[type=search], select {
          width: 100%; padding: .55rem .65rem; font: inherit; color: inherit; background: var(--paper);
          border: 1px solid #b9c1cd; border-radius: var(--radius);
        }
        button, .button {
          display: inline-block; font: inherit; font-weight: 600; padding: .5rem 1rem; border-radius: var(--radius); cursor: pointer;
          border: 1px solid var(--accent); background: var(--accent); color: #fff; text-decoration: none; line-height: 1.4;
        }
        button.secondary, .button.secondary { background: var(--paper); color: var(--accent); }
        button.danger { background: var(--paper); color: var(--bad); border-color: var(--bad); }
        button:disabled { opacity: .5; cursor: not-allowed; }
        .inline { display: inline; margin: 0; }
        .row { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; }
        .row > .grow { flex: 1 1 12rem; }
        .row label { margin-top: 0; }

        /* Messages */
        .notice, .error, .warning { padding: .75rem 1rem; border-radius: var(--radius); margin: 0 0 1rem; }
        .notice { background: var(--good-wash); color: var(--good); }
        .error { background: var(--bad-wash); color: var(--bad); }
        .warning { background: var(--warn-wash); color: var(--warn); }
        .error ul { margin: 0; padding-left: 1.25rem; }
        .muted { color: var(--muted); }

        /* The end-user pages: one card in the middle */
        .card-page { max-width: 30rem; margin: 3rem auto; padding: 0 1rem; }
        .card { background: var(--paper); border: 1px solid var(--line); border-radius: 10px; padding: 1.75rem; }
        .card button[type=submit] { margin-top: 1.25rem; width: 100%; }
        .brand { display: flex; align-items: center; gap: .5rem; font-weight: 700; color: var(--ink); text-decoration: none; margin-bottom: 1rem; }
        .brand img { height: 28px; width: auto; }
        .brand .mark { width: 28px; height: 28px; border-radius: 7px; background: var(--accent); color: #fff; display: grid; place-items: center; font-size: .9rem; }

        /* The console */
        .bar { background: var(--paper); border-bottom: 1px solid var(--line); }
        .bar-inner { max-width: 75rem; margin: 0 auto; padding: .6rem 1rem; display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; }
        .bar .brand { margin: 0; }
        .bar .search { flex: 1 1 16rem; margin: 0; }
        .bar .who { display: flex; gap: .5rem; align-items: center; color: var(--muted); font-size: .9rem; }
        .bar .who button { padding: .3rem .7rem; font-weight: 500; }
        .tabs { max-width: 75rem; margin: 0 auto; padding: 0 1rem; display: flex; gap: .25rem; overflow-x: auto; scrollbar-width: none; }
        .tabs::-webkit-scrollbar { display: none; }
        .tabs a { padding: .5rem .75rem; color: var(--muted); text-decoration: none; border-bottom: 2px solid transparent; white-space: nowrap; }
        .tabs a[aria-current=page] { color: var(--ink); border-bottom-color: var(--accent); font-weight: 600; }
        main.console { max-width: 75rem; margin: 0 auto; padding: 1.5rem 1rem 4rem; }
        .panel { background: var(--paper); border: 1px solid var(--line); border-radius: 10px; padding: 1.25rem; margin-bottom: 1.25rem; }
        .panel > h2:first-child { margin-top: 0; }
        .grid { display: grid; gap: 1.25rem; grid-template-columns: repeat(auto-fit, minmax(20rem, 1fr)); }
        .stats { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(10rem, 1fr)); margin-bottom: 1.25rem; }
        .stat { background: var(--paper); border: 1px solid var(--line); border-radius: 10px; padding: 1rem; }
        .stat .value { font-size: 1.5rem; font-weight: 700; display: block; }
        .stat .value time, .stat .value .muted { font-size: 1rem; }
        .stat .label { color: var(--muted); font-size: .875rem; }
        dl.facts { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: .35rem 1rem; margin: 0; }
        dl.facts dt { color: var(--muted); }
        dl.facts dd { margin: 0; overflow-wrap: anywhere; }
        .panel, .stat { min-width: 0; overflow-wrap: anywhere; }

        .table-wrap { position: relative; overflow-x: auto; background: var(--paper); border: 1px solid var(--line); border-radius: 10px; }
        table { width: 100%; border-collapse: collapse; overflow-wrap: normal; }
        th, td { text-align: left; padding: .6rem .75rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); background: var(--wash); }
        tbody tr:last-child td { border-bottom: 0; }
        tbody tr:hover { background: #fafbfd; }
        td time { white-space: nowrap; }
        td.actions form { margin: 0 .25rem .25rem 0; display: inline-block; }
        td.actions button { padding: .25rem .6rem; font-size: .875rem; }
        .pager { display: flex; gap: 1rem; margin: 1rem 0; align-items: center; }

        .chips { display: flex; flex-wrap: wrap; gap: .4rem; margin: .25rem 0 1rem; padding: 0; list-style: none; }
        .chip { display: inline-block; font-size: .8rem; font-weight: 600; padding: .15rem .6rem; border-radius: 999px; background: var(--info-wash); color: var(--ink); }
        .chip.good { background: var(--good-wash); color: var(--good); }
        .chip.warn { background: var(--warn-wash); color: var(--warn); }
        .chip.bad { background: var(--bad-wash); color: var(--bad); }
        .fix { margin-top: .25rem; font-size: .9em; overflow-wrap: anywhere; }
        .fix .mono { word-break: break-all; }
        .tag { font-size: .75rem; font-weight: 600; padding: .05rem .45rem; border-radius: 4px; background: var(--wash); border: 1px solid var(--line); color: var(--muted); margin-left: .25rem; }

        .state { font-weight: 700; }
        .state.good { color: var(--good); }
        .state.warn { color: var(--warn); }
        .state.bad { color: var(--bad); }

        ol.timeline { list-style: none; margin: 0; padding: 0; }
        ol.timeline li { display: grid; grid-template-columns: 11rem 1fr; gap: .75rem; padding: .55rem 0; border-bottom: 1px solid var(--line); }
        ol.timeline li:last-child { border-bottom: 0; }
        ol.timeline time { color: var(--muted); font-size: .875rem; }
        ol.timeline .detail { color: var(--muted); font-size: .9rem; word-break: break-word; }

        ol.findings { margin: 0; padding-left: 1.25rem; }
        ol.findings > li { margin-bottom: 1rem; }
        ol.findings ul { color: var(--muted); font-size: .9rem; }

        svg.chart { width: 100%; height: auto; display: block; }
        svg.chart .accepted { fill: var(--good); }
        svg.chart .temporary { fill: #d08a00; }
        svg.chart .permanent { fill: var(--bad); }
        svg.chart .axis { stroke: var(--line); }
        svg.chart text { fill: var(--muted); font-size: 11px; }
        .legend { display: flex; gap: 1rem; font-size: .875rem; color: var(--muted); margin: .5rem 0 0; padding: 0; list-style: none; }
        .legend .swatch { display: inline-block; width: .75rem; height: .75rem; border-radius: 2px; margin-right: .35rem; vertical-align: -1px; }
        .swatch.accepted { background: var(--good); }
        .swatch.temporary { background: #d08a00; }
        .swatch.permanent { background: var(--bad); }

        @media (max-width: 40rem) {
          body { font-size: 15px; }
          .bar .who { width: 100%; justify-content: space-between; }
          ol.timeline li { grid-template-columns: 1fr; gap: .1rem; }
          .card-page { margin: 1.5rem auto; }
          .card { padding: 1.25rem; }
          th, td { padding: .5rem; }
          .hide-small { display: none; }
        }
        """

    /// Live filtering, keyboard moves through the results, the sent message's live state, and
    /// copying the escalation block. Every page works without it.
    static let script = """
        "use strict";
        (function () {
          function debounce(fn, ms) { var t; return function () { var a = arguments; clearTimeout(t); t = setTimeout(function () { fn.apply(null, a); }, ms); }; }

          // Type to filter: the form's results are fetched as you type; the form still works without this.
          document.querySelectorAll("form[data-live]").forEach(function (form) {
            var input = form.querySelector("input[type=search]");
            var last = input.value;
            var pending = null;
            var update = debounce(function () {
              var q = input.value;
              if (q === last) return;
              last = q;
              if (pending) pending.abort();
              pending = new AbortController();
              fetch(form.dataset.live + "?q=" + encodeURIComponent(q), { signal: pending.signal, credentials: "same-origin" })
                .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
                .then(function (html) {
                  var next = new DOMParser().parseFromString(html, "text/html").getElementById("results");
                  var current = document.getElementById("results");
                  if (next && current) current.replaceWith(document.adoptNode(next));
                  history.replaceState(null, "", form.action + (q ? "?q=" + encodeURIComponent(q) : ""));
                })
                .catch(function () {});
            }, 120);
            input.addEventListener("input", update);
            input.addEventListener("keydown", function (e) {
              if (e.key === "ArrowDown") { var first = document.querySelector("#results a.row-link"); if (first) { e.preventDefault(); first.focus(); } }
            });
          });

          // Arrow keys move between the results' links.
          document.addEventListener("keydown", function (e) {
            if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
            var links = Array.prototype.slice.call(document.querySelectorAll("#results a.row-link"));
            var i = links.indexOf(document.activeElement);
            if (i < 0) return;
            e.preventDefault();
            if (e.key === "ArrowDown" && i + 1 < links.length) links[i + 1].focus();
            if (e.key === "ArrowUp") { if (i > 0) links[i - 1].focus(); else { var box = document.querySelector("form[data-live] input[type=search]"); if (box) box.focus(); } }
          });

          // The live state of a message just sent: polled until it is final.
          document.querySelectorAll("[data-poll]").forEach(function (box) {
            var stateEl = box.querySelector("[data-state]");
            var detailEl = box.querySelector("[data-detail]");
            function poll() {
              fetch(box.dataset.poll, { credentials: "same-origin", headers: { "Accept": "application/json" } })
                .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
                .then(function (s) {
                  stateEl.textContent = s.label;
                  stateEl.className = "state " + s.tone;
                  detailEl.textContent = s.detail;
                  if (!s.final) setTimeout(poll, 2000);
                })
                .catch(function () { setTimeout(poll, 5000); });
            }
            setTimeout(poll, 1000);
          });

          // Copy a block (the escalation) in one click.
          document.querySelectorAll("button[data-copy]").forEach(function (button) {
            button.hidden = false;
            button.addEventListener("click", function () {
              var text = document.getElementById(button.dataset.copy).textContent;
              navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 2000); });
            });
          });

          // Ask before what cannot be undone.
          document.querySelectorAll("form[data-confirm]").forEach(function (form) {
            form.addEventListener("submit", function (e) { if (!window.confirm(form.dataset.confirm)) e.preventDefault(); });
          });
        })();
        """
}
