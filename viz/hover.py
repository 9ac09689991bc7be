"""A small script that shows a thumbnail next to the cursor when hovering a plotly point whose
``customdata[0]`` is a ``data:image/...`` URI (the embedding map). Used by the app (in the page
head) and by the static HTML report."""

HOVER_JS = r"""
(function () {
  if (window.__interirThumbs) { return; }
  window.__interirThumbs = true;
  function tip() {
    var el = document.getElementById('interir-thumb-tip');
    if (!el) {
      el = document.createElement('div');
      el.id = 'interir-thumb-tip';
      el.style.cssText = 'position:fixed;z-index:10000;pointer-events:none;display:none;' +
        'background:#fff;border:1px solid #adb5bd;border-radius:6px;padding:3px;' +
        'box-shadow:0 2px 8px rgba(0,0,0,.25)';
      var img = document.createElement('img');
      img.width = 112; img.height = 112;
      img.style.cssText = 'display:block;image-rendering:auto';
      el.appendChild(img);
      document.body.appendChild(el);
    }
    return el;
  }
  function attach() {
    var plots = document.querySelectorAll('.js-plotly-plot');
    for (var i = 0; i < plots.length; i++) {
      var div = plots[i];
      if (div.__interirThumbs || typeof div.on !== 'function') { continue; }
      div.__interirThumbs = true;
      div.on('plotly_hover', function (ev) {
        var p = ev && ev.points && ev.points[0];
        var cd = p && p.customdata;
        var uri = (cd && cd.length) ? cd[0] : null;
        if (typeof uri !== 'string' || uri.indexOf('data:image/') !== 0) { return; }
        var el = tip();
        el.firstChild.src = uri;
        var e = ev.event || {};
        // left of the cursor: plotly puts its own label on the right
        var x = (e.clientX || 0) - 138, y = (e.clientY || 0) - 60;
        if (x < 4) { x = (e.clientX || 0) + 18; }
        if (y < 4) { y = 4; }
        if (y + 130 > window.innerHeight) { y = window.innerHeight - 130; }
        el.style.left = x + 'px'; el.style.top = y + 'px'; el.style.display = 'block';
      });
      div.on('plotly_unhover', function () { tip().style.display = 'none'; });
    }
  }
  setInterval(attach, 700);
})();
"""
