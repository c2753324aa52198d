"""WCAG contrast of rendered text, measured in the browser (computed colours, backgrounds composited
up the tree, so theme variables and color-mix() are judged as the user sees them)."""
from __future__ import annotations

from playwright.sync_api import Page

CONTRAST_JS = """
(selector) => {
  const parse = (c) => {
    let m = c.match(/rgba?\\(([^)]+)\\)/);
    if (m) { const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; }
    m = c.match(/color\\(srgb ([^)]+)\\)/);
    if (m) { const p = m[1].split(/[ \\/]+/).filter(Boolean).map(Number); return [p[0]*255, p[1]*255, p[2]*255, p.length > 3 ? p[3] : 1]; }
    m = c.match(/oklch|oklab|lab|lch/);
    if (m) { const cv = document.createElement('canvas'); cv.width = cv.height = 1; const x = cv.getContext('2d');
             x.fillStyle = c; x.fillRect(0, 0, 1, 1); const d = x.getImageData(0, 0, 1, 1).data; return [d[0], d[1], d[2], d[3]/255]; }
    return [0, 0, 0, 0];
  };
  const over = (top, bottom) => { const a = top[3]; return [0,1,2].map(i => top[i]*a + bottom[i]*(1-a)).concat([1]); };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let colour = [255, 255, 255, 1];
    if (!layers.length || layers[layers.length - 1][3] < 1) {
      colour = parse(getComputedStyle(document.body).backgroundColor);
      if (colour[3] < 1) colour = document.body.classList.contains('dark') ? [11, 15, 25, 1] : [255, 255, 255, 1];
    }
    for (let i = layers.length - 1; i >= 0; i--) colour = over(layers[i], colour);
    return colour;
  };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v/12.92 : Math.pow((v+0.055)/1.055, 2.4); };
                       return 0.2126*f(c[0]) + 0.7152*f(c[1]) + 0.0722*f(c[2]); };
  const out = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    const fill = el instanceof SVGElement ? style.fill : style.color;
    let fg = parse(fill);
    let op = 1; for (let e = el; e; e = e.parentElement) op *= Number(getComputedStyle(e).opacity || 1);
    const bg = background(el);
    fg = over([fg[0], fg[1], fg[2], fg[3] * op], bg);
    const a = lum(fg), b = lum(bg);
    out.push({text: (el.textContent || '').trim().slice(0, 40), ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05),
              fg: fill, bg: bg.map(Math.round).join(',')});
  }
  return out;
}
"""


def contrasts(page: Page, selector: str) -> list[dict]:
    """[{text, ratio, fg, bg}] for every visible element matching selector."""
    return page.evaluate(CONTRAST_JS, selector)


def worst(page: Page, selector: str) -> dict:
    found = contrasts(page, selector)
    assert found, f"nothing visible matches {selector}"
    return min(found, key=lambda r: r["ratio"])
