// The overview's chart of message rates, drawn on a <canvas>: one line per series, over the
// last samples, with a light grid and the scale on the left.

/** Draws `series` ([{ values, color }], values oldest first, null where unknown) on `canvas`,
 *  `capacity` samples wide. */
export function drawRates(canvas, series, capacity) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (width === 0 || height === 0) return;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const context = canvas.getContext('2d');
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);

  const style = getComputedStyle(canvas);
  const grid = style.getPropertyValue('--grid').trim() || '#e5e7eb';
  const text = style.getPropertyValue('--muted').trim() || '#6b7280';
  const left = 48;
  const right = 12;
  const top = 10;
  const bottom = 22;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;

  const highest = Math.max(1, ...series.flatMap((s) => s.values.filter((v) => v !== null)));
  // Four steps of a round size, so every label on the scale is a round number.
  const scale = 4 * niceCeiling(highest / 4);
  context.font = '12px system-ui, sans-serif';
  context.textAlign = 'right';
  context.textBaseline = 'middle';
  context.lineWidth = 1;
  for (let step = 0; step <= 4; step++) {
    const y = top + plotHeight - (plotHeight * step) / 4;
    context.strokeStyle = grid;
    context.beginPath();
    context.moveTo(left, Math.round(y) + 0.5);
    context.lineTo(width - right, Math.round(y) + 0.5);
    context.stroke();
    context.fillStyle = text;
    context.fillText(formatRate((scale * step) / 4), left - 8, y);
  }
  context.textAlign = 'left';
  context.textBaseline = 'alphabetic';
  context.fillText(`last ${capacity * 2} s`, left, height - 4);
  context.textAlign = 'right';
  context.fillText('now', width - right, height - 4);

  const x = (index) => left + (plotWidth * index) / Math.max(1, capacity - 1);
  const y = (value) => top + plotHeight - (plotHeight * value) / scale;
  context.lineWidth = 2;
  context.lineJoin = 'round';
  for (const { values, color } of series) {
    const offset = capacity - values.length;
    context.strokeStyle = color;
    context.beginPath();
    let drawing = false;
    values.forEach((value, index) => {
      if (value === null) {
        drawing = false;
        return;
      }
      if (drawing) context.lineTo(x(offset + index), y(value));
      else context.moveTo(x(offset + index), y(value));
      drawing = true;
    });
    context.stroke();
    // A sample with no neighbour (the first) is a dot.
    context.fillStyle = color;
    values.forEach((value, index) => {
      const alone = (values[index - 1] ?? null) === null && (values[index + 1] ?? null) === null;
      if (value === null || !alone) return;
      context.beginPath();
      context.arc(x(offset + index), y(value), 3, 0, 2 * Math.PI);
      context.fill();
    });
  }
}

/** The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `value`. */
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const factor of [1, 2, 2.5, 5, 10]) {
    if (factor * power >= value) return factor * power;
  }
  return 10 * power;
}

/** A rate for the scale: as few decimals as it needs. */
function formatRate(value) {
  return String(Number(value.toFixed(2)));
}
