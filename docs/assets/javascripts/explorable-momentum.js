// Momentum, live (BatchNorm page, moving averages). The batch means of the running-mean
// picture's drifting feature (batch_norm_pictures.json, embedded at build time) and the
// running mean that BatchNorm would keep of them, redrawn for any momentum α: with α the
// weight of the new batch (PyTorch's convention), E[x] ← (1 − α) E[x] + α μ_B from E[x] = 0;
// with momentum=None the plain average of all batches so far. A small α lags behind the
// drift, a large one copies each batch's noise.
(function () {
  var X = window.Explorable;
  var h = X.h, s = X.s;

  // The slider is logarithmic from 0.01 to 1 (position 0–200, α = 10^(position/100 − 2)),
  // so that 0.01–0.1 gets as much room as 0.1–1; α is rounded to 3 significant digits, and
  // the value shown is the value used
  function alphaAt(position) {
    return Number(Math.pow(10, position / 100 - 2).toPrecision(3));
  }

  function runningMeans(batchMeans, alpha) {
    var mean = 0;
    return batchMeans.map(function (batchMean, t) {
      var weight = alpha === null ? 1 / (t + 1) : alpha;
      mean = (1 - weight) * mean + weight * batchMean;
      return mean;
    });
  }

  function init(root, data) {
    var batchMeans = data.batch_means, trueMean = data.true_mean, steps = data.steps;
    var width = 440, height = 250;
    var left = 36, right = 10, top = 10, bottom = 34;
    var all = batchMeans.concat(trueMean);
    var low = Math.floor(Math.min.apply(null, all));
    var high = Math.ceil(Math.max.apply(null, all));
    function px(step) {
      return left + (step - 1) / (steps - 1) * (width - left - right);
    }
    function py(v) { return top + (high - v) / (high - low) * (height - top - bottom); }
    function points(values) {
      return values.map(function (v, t) {
        return px(t + 1).toFixed(2) + ',' + py(v).toFixed(2);
      }).join(' ');
    }

    var svg = s('svg', {viewBox: '0 0 ' + width + ' ' + height, role: 'img',
                        'aria-label': 'batch means and the running mean over ' + steps +
                                      ' training steps'});
    for (var v = low; v <= high; v++) {
      svg.appendChild(s('line', {x1: left, x2: width - right, y1: py(v), y2: py(v),
                                 'class': 'xp-gridline'}));
      svg.appendChild(s('text', {x: left - 6, y: py(v) + 4, 'text-anchor': 'end',
                                 text: X.fmt(v, 0)}));
    }
    [1, 100, 200, steps].forEach(function (step) {
      svg.appendChild(s('text', {x: px(step), y: height - bottom + 15,
                                 'text-anchor': 'middle', text: String(step)}));
    });
    svg.appendChild(s('text', {x: (left + width - right) / 2, y: height - 3,
                               'text-anchor': 'middle', text: 'training step'}));
    svg.appendChild(s('line', {x1: left, x2: width - right, y1: height - bottom,
                               y2: height - bottom, 'class': 'xp-axis'}));
    var dots = s('g', {'aria-hidden': 'true'});
    batchMeans.forEach(function (mean, t) {
      dots.appendChild(s('circle', {cx: px(t + 1).toFixed(2), cy: py(mean).toFixed(2),
                                    r: 1.6, 'class': 'xp-dot'}));
    });
    svg.appendChild(dots);
    svg.appendChild(s('polyline', {points: points(trueMean), 'class': 'xp-true'}));
    var line = s('polyline', {'class': 'xp-running'});
    svg.appendChild(line);

    var sliderId = X.uid('alpha'), noneId = X.uid('none');
    var slider = h('input', {type: 'range', id: sliderId, min: '0', max: '200',
                             step: '1', value: '100'});
    var alphaText = h('output', {'for': sliderId});
    var none = h('input', {type: 'checkbox', id: noneId});
    var at100 = h('output', {'data-key': 'at-100'});
    var last = h('output', {'data-key': 'final'});

    root.appendChild(h('p', {'class': 'xp-title', text: 'Try it: drag the momentum'}));
    root.appendChild(h('div', {'class': 'xp-control'}, [
      h('label', {'for': sliderId, text: 'momentum α'}), slider, alphaText]));
    root.appendChild(h('div', {'class': 'xp-control xp-check'}, [
      none, h('label', {'for': noneId,
                        text: 'momentum=None: the average of all batches so far'})]));
    root.appendChild(svg);
    root.appendChild(h('p', {'class': 'xp-note'}, [
      h('span', {'class': 'xp-key xp-running-key', style: 'color: var(--xp-indigo)'}),
      'running mean  ',
      h('span', {'class': 'xp-key xp-key--dashed'}), 'true mean  ',
      h('span', {style: 'color: var(--xp-grey)', text: '●'}),
      ' batch means (' + data.batch_size + ' values each)']));
    root.appendChild(h('p', {}, [
      'running mean at step 100: ', at100,
      ' (true mean ' + X.fmt(trueMean[99], 2) + '); at step ' + steps + ': ', last,
      ' (true mean ' + X.fmt(trueMean[steps - 1], 2) + ')']));

    function update() {
      var alpha = none.checked ? null : alphaAt(Number(slider.value));
      slider.disabled = none.checked;
      alphaText.textContent = none.checked ? 'None' : 'α = ' + alpha;
      slider.setAttribute('aria-valuetext', 'α = ' + alphaAt(Number(slider.value)));
      root.setAttribute('data-momentum', alpha === null ? 'None' : String(alpha));
      var means = runningMeans(batchMeans, alpha);
      line.setAttribute('points', points(means));
      X.show(at100, means[99]);
      X.show(last, means[steps - 1]);
    }

    slider.addEventListener('input', update);
    none.addEventListener('change', update);
    update();
  }

  X.register('momentum', init);
})();
